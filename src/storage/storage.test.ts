// Proves the storage port on the engine under test (PostgreSQL in CI, PGlite embedded): migrations are
// idempotent, PostgreSQL sessions carry Keel's statement and lock timeouts, transactions roll back whole,
// bigint money survives both drivers, ids are time-ordered and convert both ways, and field encryption detects
// tampering.
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { after, before, describe, test } from 'node:test';
import { testDatabaseUrl } from '../testing/harness.js';
import { dropSchema, isTransientDatabaseError, migrateToLatest, openDatabase, type Database } from './database.js';
import { FieldCipher } from './encryption.js';
import { newId, publicToUuid, uuidToPublic, uuidv7 } from './ids.js';

const url = testDatabaseUrl();
const schema = url === undefined ? undefined : `keel_test_${randomBytes(6).toString('hex')}`;
let database: Database;

before(async () => {
  database = await openDatabase({ url, schema });
  await migrateToLatest(database);
});
after(async () => {
  await database.close();
  if (url !== undefined && schema !== undefined) await dropSchema(url, schema);
});

describe('database', () => {
  test('migrations are idempotent', async () => {
    assert.deepEqual(await migrateToLatest(database), []);
  });

  test('PostgreSQL sessions carry statement_timeout 5 s and lock_timeout 1 s', { skip: url === undefined ? 'embedded PGlite has no server-side timeouts' : false }, async () => {
    const statement = await sql<{ statement_timeout: string }>`SHOW statement_timeout`.execute(database.db);
    const lock = await sql<{ lock_timeout: string }>`SHOW lock_timeout`.execute(database.db);
    assert.equal(statement.rows[0]?.statement_timeout, '5s');
    assert.equal(lock.rows[0]?.lock_timeout, '1s');
  });

  test('the pool gives up waiting for a connection after its acquire timeout', { skip: url === undefined ? 'PGlite has one in-process connection and no pool' : false }, async () => {
    const small = await openDatabase({ url, schema, poolSizeMax: 1, poolAcquireTimeoutMs: 200 });
    try {
      let release: () => void = () => undefined;
      const held = small.db.transaction().execute(async (trx) => {
        await sql`SELECT 1`.execute(trx);
        await new Promise<void>((resolve) => {
          release = resolve;
        });
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      const error = await sql`SELECT 1`.execute(small.db).then(() => undefined, (caught: unknown) => caught);
      release();
      await held;
      assert.ok(error !== undefined, 'the second query could not get a connection');
      assert.equal(isTransientDatabaseError(error), true, String(error));
    } finally {
      await small.close();
    }
  });

  test('a failed transaction leaves nothing behind', async () => {
    const merchantId = newId('merchant').uuid;
    await assert.rejects(
      database.db.transaction().execute(async (trx) => {
        await trx
          .insertInto('merchants')
          .values({ id: merchantId, name: 'Rollback', brand_name: 'R', country: 'KR', gateway: 'toss', partner_secret_key_encrypted: 'x' })
          .execute();
        throw new Error('boom');
      }),
      /boom/,
    );
    const found = await database.db.selectFrom('merchants').select('id').where('id', '=', merchantId).execute();
    assert.equal(found.length, 0);
  });

  test('bigint amounts above 2^53 survive a round trip exactly', async () => {
    const result = await sql<{ value: string }>`SELECT ${'9007199254740993'}::bigint AS value`.execute(database.db);
    assert.equal(BigInt(result.rows[0]?.value ?? '0'), 9007199254740993n);
  });
});

describe('ids', () => {
  test('public ids are a prefix plus 26 Crockford base32 characters and convert back', () => {
    const { uuid, publicId } = newId('payment');
    assert.match(publicId, /^pay_[0-9A-HJKMNP-TV-Z]{26}$/);
    assert.equal(publicToUuid('payment', publicId), uuid);
    assert.equal(publicToUuid('refund', publicId), undefined, 'an id of another kind is not accepted');
    assert.equal(publicToUuid('payment', 'pay_0000000000000000000000000I'), undefined);
    assert.equal(publicToUuid('payment', `pay_${'Z'.repeat(26)}`), undefined, 'more than 128 bits');
    // Known values: the ULID encoding of 128 bits, most significant digit first.
    assert.equal(uuidToPublic('payment', '00000000-0000-0000-0000-000000000000'), `pay_${'0'.repeat(26)}`);
    assert.equal(uuidToPublic('payment', 'ffffffff-ffff-ffff-ffff-ffffffffffff'), `pay_7${'Z'.repeat(25)}`);
    assert.equal(uuidToPublic('payment', '01890a5d-ac96-774b-bcce-b302099a8057'), 'pay_01H455VB4PEX5VSKNK084SN02Q');
    for (let index = 0; index < 1000; index += 1) {
      const id = uuidv7();
      assert.equal(publicToUuid('payment', uuidToPublic('payment', id)), id);
    }
  });

  test('uuidv7 ids sort by creation time, also within one millisecond', () => {
    const ids = Array.from({ length: 1000 }, () => uuidv7(1_700_000_000_000));
    assert.deepEqual([...ids].sort(), ids);
    assert.equal(new Set(ids).size, ids.length);
    assert.equal(ids[0]?.[14], '7', 'version 7');
    const publicIds = ids.map((id) => uuidToPublic('payment', id));
    assert.deepEqual([...publicIds].sort(), publicIds, 'public ids sort the same way');
  });
});

describe('field encryption', () => {
  test('AES-256-GCM round trip, fresh nonce per value, tampering detected', () => {
    const cipher = FieldCipher.fromSecret(FieldCipher.generateSecret());
    const sealed = cipher.encrypt('bk_secret_token');
    assert.notEqual(sealed, cipher.encrypt('bk_secret_token'));
    assert.equal(cipher.decrypt(sealed), 'bk_secret_token');
    const parts = sealed.split('.');
    const body = Buffer.from(parts[2] ?? '', 'base64url');
    body[0] = (body[0] ?? 0) ^ 1;
    parts[2] = body.toString('base64url');
    assert.throws(() => cipher.decrypt(parts.join('.')));
    const other = FieldCipher.fromSecret(FieldCipher.generateSecret());
    assert.throws(() => other.decrypt(sealed));
    assert.equal(cipher.fingerprint('4242424242424242'), cipher.fingerprint('4242424242424242'));
    assert.notEqual(cipher.fingerprint('4242424242424242'), other.fingerprint('4242424242424242'));
  });

  test('separate keys derived with HKDF: no use shares the master key, and values sealed with it (v1) still open', () => {
    const secret = FieldCipher.generateSecret();
    const master = Buffer.from(secret, 'hex');
    const cipher = FieldCipher.fromSecret(secret);
    assert.match(cipher.encrypt('x'), /^v2\./);
    // A value sealed by an earlier Keel directly with the master key.
    const nonce = randomBytes(12);
    const legacy = createCipheriv('aes-256-gcm', master, nonce);
    const ciphertext = Buffer.concat([legacy.update('bk_old_token', 'utf8'), legacy.final()]);
    const v1 = ['v1', nonce.toString('base64url'), ciphertext.toString('base64url'), legacy.getAuthTag().toString('base64url')].join('.');
    assert.equal(cipher.decrypt(v1), 'bk_old_token');
    // A v2 value does not open with the master key itself.
    const [, sealedNonce, sealedText, sealedTag] = cipher.encrypt('bk_new_token').split('.');
    const withMaster = createDecipheriv('aes-256-gcm', master, Buffer.from(sealedNonce ?? '', 'base64url'));
    withMaster.setAuthTag(Buffer.from(sealedTag ?? '', 'base64url'));
    assert.throws(() => Buffer.concat([withMaster.update(Buffer.from(sealedText ?? '', 'base64url')), withMaster.final()]));
    // Fingerprints and request digests are HMACs under their own keys, neither under the master key.
    const underMaster = createHmac('sha256', master).update('4242424242424242').digest();
    assert.notEqual(cipher.fingerprint('4242424242424242'), underMaster.toString('base64url').slice(0, 22));
    assert.notEqual(cipher.digest('4242424242424242'), underMaster.toString('hex'));
    assert.notEqual(cipher.digest('4242424242424242').slice(0, 22), cipher.fingerprint('4242424242424242'));
  });
});
