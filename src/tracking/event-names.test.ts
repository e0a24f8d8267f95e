import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TRACKING_EVENTS, trackingEventName } from './event-names.js';
import { trackingEvent } from './events.js';

test('an event name is found whatever its case; one no stage records is not', () => {
  assert.equal(trackingEventName('send'), 'SEND');
  assert.equal(trackingEventName(' DuplicateDeliver '), 'DUPLICATEDELIVER');
  assert.equal(trackingEventName('BOGUS'), undefined);
  assert.equal(trackingEventName('TRANSFER'), undefined, 'in the guide, never written here');
  assert.equal(trackingEventName(''), undefined);
});

test('every event a constructor writes is in the list', () => {
  const m = { id: 'Q1', sender: 'a@x.test', size: 10 };
  const written = [
    trackingEvent.received({ ...m, recipients: [], clientIp: '', connectorId: '', originating: false }),
    trackingEvent.submitted({ ...m, recipients: [] }),
    trackingEvent.delivered(m, { address: 'b@x', original: 'b@x', store: 's', duplicate: false }),
    trackingEvent.delivered(m, { address: 'b@x', original: 'b@x', store: 's', duplicate: true }),
    trackingEvent.sent(m, [], 'mx', 'q'),
    trackingEvent.deferred(m, [], 'SMTP'),
    trackingEvent.failed(m, [], 'SMTP'),
    trackingEvent.dsn({ ...m, recipients: [] }, { reference: '', recipients: [], statuses: [], actions: [] }),
    trackingEvent.badmail({ ...m, recipients: [] }, 'DSN', ''),
  ].map((e) => e.event);
  for (const e of written) assert.ok((TRACKING_EVENTS as readonly string[]).includes(e), e);
});
