import { pino, type DestinationStream, type Logger } from 'pino';
import { currentContext } from './context.js';

export type { Logger } from 'pino';

/**
 * Paths that may carry card data, PINs or secrets. Keel never logs request bodies, so these are a second
 * line of defence for objects logged by mistake; a test pushes such values through every endpoint and
 * checks the log stream.
 */
const redactedPaths = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  '*.card.number',
  '*.card.cvc',
  'card.number',
  'card.cvc',
  'number',
  'cvc',
  'pin',
  'current_pin',
  '*.pin',
  'secret_key',
  'secretKey',
  '*.secret_key',
  'partner_secret_key',
  'account_number',
  '*.account_number',
];

export interface LoggerOptions {
  readonly level: string;
  readonly destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'keel' },
      timestamp: pino.stdTimeFunctions.isoTime,
      messageKey: 'message',
      redact: { paths: redactedPaths, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      mixin(_object, _level, logger) {
        // Request loggers already carry the ids as bindings; the mixin serves every other logger.
        if ('correlation_id' in logger.bindings()) return {};
        const context = currentContext();
        return context === undefined ? {} : { correlation_id: context.correlationId, request_id: context.requestId };
      },
    },
    options.destination ?? pino.destination({ sync: false }),
  );
}
