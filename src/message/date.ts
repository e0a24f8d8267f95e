// NAME      date: RFC 5322 date-time for header fields and the SMTP banner. No I/O here.
// SYNOPSIS  rfc5322Date(new Date()) -> "Tue, 5 Mar 2024 09:04:07 +0000"
// DESCRIPTION
//   Always UTC ("+0000"), so the text never depends on the host's time zone; the day of
//   the month is not padded, hours, minutes and seconds are (RFC 5322 §3.3).
// STANDARDS RFC 5322 §3.3

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

const twoDigits = (value: number): string => String(value).padStart(2, '0');

export function rfc5322Date(date: Date): string {
  const time = `${twoDigits(date.getUTCHours())}:${twoDigits(date.getUTCMinutes())}:${twoDigits(date.getUTCSeconds())}`;
  return `${DAYS[date.getUTCDay()]}, ${date.getUTCDate()} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()} ${time} +0000`;
}
