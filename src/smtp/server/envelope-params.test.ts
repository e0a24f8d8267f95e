import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePath } from '../address.js';
import { TransportError } from '../status.js';
import { recipientParameters, senderParameters, type SenderLimits } from './envelope-params.js';

const EHLO: SenderLimits = { esmtp: true, maxMessageSizeKb: 4096 };

const mail = (arg: string, limits = EHLO) => senderParameters(parsePath(`FROM:${arg}`, 'sender'), limits);
const rcpt = (arg: string, smtputf8 = false) =>
  recipientParameters(parsePath(`TO:${arg}`, 'recipient'), smtputf8);

/** The reply line the session would send for a refused parameter. */
function refusal(result: unknown): string {
  assert.ok(result instanceof TransportError, `expected a refusal, got ${JSON.stringify(result)}`);
  return `${result.code} ${result.status} ${result.message}`;
}

test('MAIL: no parameters is 7BIT without SMTPUTF8', () => {
  assert.deepEqual(mail('<a@example.com>'), { body: '7BIT', smtputf8: false });
});

test('MAIL: every known parameter parsed', () => {
  assert.deepEqual(mail('<a@example.com> SIZE=1000 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=QQ+2B1 AUTH=<>'), {
    body: '8BITMIME',
    smtputf8: true,
    ret: 'HDRS',
    envid: 'QQ+1',
    declaredSize: 1000,
  });
  assert.deepEqual(mail('<a@example.com> BODY=BINARYMIME'), { body: 'BINARYMIME', smtputf8: false });
});

test('MAIL: SIZE must be a number within the limit', () => {
  assert.equal(refusal(mail('<a@example.com> SIZE=ten')), '501 5.5.4 Invalid SIZE parameter');
  assert.equal(refusal(mail('<a@example.com> SIZE')), '501 5.5.4 Invalid SIZE parameter');
  assert.equal(
    refusal(mail('<a@example.com> SIZE=4194305')),
    '552 5.3.4 Message size exceeds fixed maximum message size',
  );
  assert.deepEqual(mail('<a@example.com> SIZE=4194304'), {
    body: '7BIT',
    smtputf8: false,
    declaredSize: 4194304,
  });
  assert.deepEqual(mail('<a@example.com> SIZE=999999999', { esmtp: true, maxMessageSizeKb: null }), {
    body: '7BIT',
    smtputf8: false,
    declaredSize: 999999999,
  });
});

test('MAIL: bad BODY, SMTPUTF8, RET, ENVID values', () => {
  assert.equal(refusal(mail('<a@example.com> BODY=9BIT')), '501 5.5.4 Invalid BODY parameter: 9BIT');
  assert.equal(refusal(mail('<a@example.com> BODY')), '501 5.5.4 Invalid BODY parameter: ');
  assert.equal(refusal(mail('<a@example.com> SMTPUTF8=yes')), '501 5.5.4 SMTPUTF8 takes no value');
  assert.equal(refusal(mail('<a@example.com> RET=ALL')), '501 5.5.4 Invalid RET parameter');
  assert.equal(refusal(mail('<a@example.com> ENVID')), '501 5.5.4 Invalid ENVID parameter');
  assert.equal(
    refusal(mail(`<a@example.com> ENVID=${'x'.repeat(101)}`)),
    '501 5.5.4 Invalid ENVID parameter',
  );
  assert.equal(refusal(mail('<a@example.com> ENVID=a=b')), '501 5.5.4 Invalid ENVID parameter');
});

test('MAIL: unknown parameters, and the first bad one is the answer', () => {
  assert.equal(refusal(mail('<a@example.com> FOO=1')), '555 5.5.4 Unsupported option: FOO');
  assert.equal(refusal(mail('<a@example.com> RET=X SIZE=x')), '501 5.5.4 Invalid RET parameter');
});

test('MAIL: a UTF-8 path needs SMTPUTF8; parameters need EHLO, checked after their values', () => {
  assert.equal(
    refusal(mail('<jösé@example.com>')),
    '553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter',
  );
  assert.deepEqual(mail('<jösé@example.com> SMTPUTF8'), { body: '7BIT', smtputf8: true });
  const helo: SenderLimits = { esmtp: false, maxMessageSizeKb: 4096 };
  assert.equal(refusal(mail('<a@example.com> SIZE=10', helo)), '555 5.5.4 Parameters need EHLO');
  assert.equal(refusal(mail('<a@example.com> SIZE=x', helo)), '501 5.5.4 Invalid SIZE parameter');
  assert.deepEqual(mail('<a@example.com>', helo), { body: '7BIT', smtputf8: false });
});

test('RCPT: NOTIFY and ORCPT', () => {
  assert.deepEqual(rcpt('<b@example.com>'), {});
  assert.deepEqual(rcpt('<b@example.com> NOTIFY=success,delay ORCPT=rfc822;b+40example.com'), {
    notify: ['SUCCESS', 'DELAY'],
    orcpt: 'rfc822;b@example.com',
  });
  assert.deepEqual(rcpt('<b@example.com> NOTIFY=NEVER'), { notify: ['NEVER'] });
});

test('RCPT: bad NOTIFY, ORCPT, unknown parameters', () => {
  assert.equal(refusal(rcpt('<b@example.com> NOTIFY=NEVER,FAILURE')), '501 5.5.4 Invalid NOTIFY parameter');
  assert.equal(refusal(rcpt('<b@example.com> NOTIFY')), '501 5.5.4 Invalid NOTIFY parameter');
  assert.equal(refusal(rcpt('<b@example.com> NOTIFY=SOMETIMES')), '501 5.5.4 Invalid NOTIFY parameter');
  assert.equal(refusal(rcpt('<b@example.com> ORCPT=b@example.com')), '501 5.5.4 Invalid ORCPT parameter');
  assert.equal(refusal(rcpt('<b@example.com> ORCPT')), '501 5.5.4 Invalid ORCPT parameter');
  assert.equal(refusal(rcpt('<b@example.com> SIZE=1')), '555 5.5.4 Unsupported option: SIZE');
});

test('RCPT: a UTF-8 path needs SMTPUTF8 on the transaction', () => {
  assert.equal(
    refusal(rcpt('<jösé@example.com>')),
    '553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter',
  );
  assert.deepEqual(rcpt('<jösé@example.com>', true), {});
});
