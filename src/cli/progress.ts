/**
 * A progress line for a long command: every `everyMs` it writes `<label>: <rows> rows read, <seconds> s` (or
 * only the time when the count cannot be read) to `write` (standard error, so `--json` output stays clean),
 * until stopped.
 */
export function progressLines(label: string, readRows: () => Promise<number | undefined>, write: (line: string) => void, everyMs = 5_000): { stop(): void } {
  const started = Date.now();
  let stopped = false;
  const timer = setInterval(() => {
    void readRows()
      .catch(() => undefined)
      .then((rows) => {
        if (stopped) return;
        const seconds = Math.round((Date.now() - started) / 1000);
        write(`${label}: ${rows === undefined ? '' : `${rows} rows read, `}${seconds} s`);
      });
  }, everyMs);
  return {
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}
