// Replies and errors with their RFC 3463 status live in message/status.ts, shared by every
// stage; the SMTP side keeps importing them from here.
export { TransportError, reply, formatReply, type Reply } from '../message/status.js';
