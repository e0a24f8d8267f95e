import { test } from 'node:test';
import assert from 'node:assert/strict';
import { modePolicy, wantedMode } from './file-modes.js';
import type { ServerConfig } from '../config/schema.js';

const server = (maildir?: { directoryMode: number; fileMode: number }) =>
  ({
    mailboxStores: [
      { name: 'Mailbox Store', maildir: { directoryMode: 0o700, fileMode: 0o600 } },
      ...(maildir ? [{ name: 'Shared Store', maildir }] : []),
    ],
  }) as unknown as ServerConfig;

test('private by default: directories 0700, files 0600, messages in a Maildir not walked', () => {
  const p = modePolicy(server());
  assert.deepEqual(wantedMode(p, [], true), { mode: 0o700, descend: true });
  assert.deepEqual(wantedMode(p, ['queue'], true), { mode: 0o700, descend: true });
  assert.deepEqual(wantedMode(p, ['queue', 'queue.db-wal'], false), { mode: 0o600, descend: false });
  assert.deepEqual(wantedMode(p, ['admin.token'], false), { mode: 0o600, descend: false });
  assert.deepEqual(wantedMode(p, ['mailboxes'], true), { mode: 0o700, descend: true });
  assert.deepEqual(wantedMode(p, ['mailboxes', 'Mailbox_Store', 'alice@example.com'], true), {
    mode: 0o700,
    descend: true,
  });
  assert.deepEqual(wantedMode(p, ['mailboxes', 'Mailbox_Store', 'alice@example.com', 'new'], true), {
    mode: 0o700,
    descend: false,
  });
  assert.equal(
    wantedMode(p, ['mailboxes', 'Mailbox_Store', 'alice@example.com', 'new', 'x'], false),
    undefined,
  );
});

test('a shared store: its Maildirs take its modes; data directory and mailboxes/ only pass through', () => {
  const p = modePolicy(server({ directoryMode: 0o750, fileMode: 0o640 }));
  assert.equal(p.passThrough, 0o710);
  assert.deepEqual(wantedMode(p, [], true), { mode: 0o710, descend: true });
  assert.deepEqual(wantedMode(p, ['mailboxes'], true), { mode: 0o710, descend: true });
  assert.deepEqual(wantedMode(p, ['queue'], true), { mode: 0o700, descend: true });
  assert.deepEqual(wantedMode(p, ['mailboxes', 'Shared_Store'], true), { mode: 0o750, descend: true });
  assert.deepEqual(
    wantedMode(p, ['mailboxes', 'Shared_Store', 'bob@example.com', 'dovecot-uidlist'], false),
    {
      mode: 0o640,
      descend: false,
    },
  );
  assert.deepEqual(wantedMode(p, ['mailboxes', 'Mailbox_Store'], true), { mode: 0o700, descend: true });
  assert.equal(modePolicy(server({ directoryMode: 0o755, fileMode: 0o644 })).passThrough, 0o711);
});
