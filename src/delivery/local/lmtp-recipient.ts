// NAME      LMTP recipient: the address RCPT TO names for a mailbox of an LMTP store
// SYNOPSIS  lmtpRecipient(template, address) · recipientTemplateProblem(template)
// DESCRIPTION
//   No I/O here. Dovecot setups differ in the user name they key mailboxes by: the whole
//   address (the default), the local part, or another domain. mailboxStores[].lmtp.rcptTo
//   is a template over the user's primary address with {address}, {localPart} and
//   {domain}; the configuration refuses one that cannot name a mailbox.
const PLACEHOLDER = /\{([A-Za-z]+)\}/g;
const FIELDS = ['address', 'localPart', 'domain'] as const;

/** Why a rcptTo template cannot work, or undefined when it can. */
export function recipientTemplateProblem(template: string): string | undefined {
  const unknown = [...template.matchAll(PLACEHOLDER)]
    .map((m) => m[1]!)
    .filter((f) => !(FIELDS as readonly string[]).includes(f));
  if (unknown.length) return `unknown placeholder {${unknown[0]}}: use {address}, {localPart} or {domain}`;
  if (!/\{(address|localPart)\}/.test(template)) return 'must contain {address} or {localPart}';
  if (/[\s<>]/.test(template)) return 'must not contain spaces or angle brackets';
  return undefined;
}

/** The RCPT TO address for a mailbox's primary address. */
export function lmtpRecipient(template: string, address: string): string {
  const at = address.lastIndexOf('@');
  const values: Record<(typeof FIELDS)[number], string> = {
    address,
    localPart: at < 0 ? address : address.slice(0, at),
    domain: at < 0 ? '' : address.slice(at + 1),
  };
  return template.replace(PLACEHOLDER, (whole, field: string) =>
    field in values ? values[field as keyof typeof values] : whole,
  );
}
