import { sql, type Kysely, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import { request } from 'undici';
import type { KeelDatabase } from '../storage/schema.js';

/**
 * Chat notices for `KEEL_SLACK_WEBHOOK_URL`: queued in the transaction of the change they announce, sent by the
 * workers (`sendDueNotices`), retried with backoff (1 min doubling to 1 h, 10 tries) — never on a request's or a
 * payment's path. A notice with a dedupe key (a daily reminder) is queued once, however many workers try.
 */
export const noticeAttemptsMax = 10;
const noticeTimeoutMs = 5_000;

type Db = Kysely<KeelDatabase> | Transaction<KeelDatabase>;

export async function queueNotice(db: Db, text: string, dedupeKey?: string): Promise<boolean> {
  const queued = await db
    .insertInto('chat_notices')
    .values({ text, dedupe_key: dedupeKey ?? null })
    .onConflict((conflict) => conflict.column('dedupe_key').doNothing())
    .returning('id')
    .executeTakeFirst();
  return queued !== undefined;
}

/** Sends the notices that are due, oldest first; resolves to how many were sent. */
export async function sendDueNotices(db: Kysely<KeelDatabase>, webhookUrl: string, logger: Logger, batch = 20): Promise<number> {
  let sent = 0;
  for (;;) {
    const due = await db.transaction().execute(async (trx) => {
      const rows = await trx
        .selectFrom('chat_notices')
        .select(['id', 'text', 'attempts'])
        .where('sent_at', 'is', null)
        .where('attempts', '<', noticeAttemptsMax)
        .where('next_attempt_at', '<=', new Date())
        .orderBy('id')
        .limit(batch)
        .forUpdate()
        .skipLocked()
        .execute();
      // Claimed for a minute: another worker skips them meanwhile.
      if (rows.length > 0) await trx.updateTable('chat_notices').set({ next_attempt_at: sql`now() + interval '1 minute'` }).where('id', 'in', rows.map((row) => row.id)).execute();
      return rows;
    });
    if (due.length === 0) return sent;
    for (const notice of due) {
      const ok = await post(webhookUrl, notice.text).catch((error: unknown) => {
        logger.warn({ err_message: String(error), notice: notice.id }, 'chat notice not sent');
        return false;
      });
      const attempts = notice.attempts + 1;
      const retryInS = Math.min(3_600, 60 * 2 ** (attempts - 1));
      await db
        .updateTable('chat_notices')
        .set(ok ? { sent_at: new Date(), attempts } : { attempts, next_attempt_at: new Date(Date.now() + retryInS * 1000) })
        .where('id', '=', notice.id)
        .execute();
      if (ok) sent += 1;
    }
    if (due.length < batch) return sent;
  }
}

async function post(url: string, text: string): Promise<boolean> {
  const response = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text }), headersTimeout: noticeTimeoutMs, bodyTimeout: noticeTimeoutMs });
  await response.body.dump();
  return response.statusCode >= 200 && response.statusCode < 300;
}
