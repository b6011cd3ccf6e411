import { randomFillSync } from 'node:crypto';

/**
 * Random bytes from the CSPRNG a batch at a time: one `randomFillSync` call serves many small draws (an id's
 * 16 bytes, a nonce's 12) instead of a system call each. Each draw is a copy no other draw shares.
 */
const poolSize = 4_096;
const pool = Buffer.alloc(poolSize);
let offset = poolSize;

export function pooledRandomBytes(size: number): Buffer {
  if (size > poolSize) return randomFillSync(Buffer.alloc(size));
  if (offset + size > poolSize) {
    randomFillSync(pool);
    offset = 0;
  }
  const bytes = Buffer.from(pool.subarray(offset, offset + size));
  offset += size;
  return bytes;
}
