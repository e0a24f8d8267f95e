// A private Dovecot (LMTP + IMAP) for tests: its own dovecot.conf, users, Maildirs, base_dir,
// state_dir and log under one folder, listening on a loopback address of its own. It never
// touches a system instance. Mail is stored as the `mail` user (Dovecot refuses root), so
// the folder is made traversable (0755) and the mail folder is given to that user.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export interface DovecotUser {
  address: string;
  password: string;
  /** Dovecot quota rule for this user, e.g. "*:storage=1K". */
  quotaRule?: string;
}

export interface PrivateDovecot {
  dir: string;
  host: string;
  lmtpPort: number;
  imapPort: number;
  /** The dovecot.conf it runs with. */
  configFile: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  log(): string;
  /** Every message in a user's INBOX, read over IMAP with Python's imaplib. */
  imapInbox(user: DovecotUser): string[];
}

/** The configuration (also the one docs/directory.md ("Mailbox stores") shows, trimmed). */
export function dovecotConfig(dir: string, host: string, lmtpPort: number, imapPort: number): string {
  return `# Private Dovecot for a Bridgehead test: everything under ${dir}
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
info_log_path = ${dir}/dovecot.log
protocols = lmtp imap
listen = ${host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
# Mail is stored as "mail" (Dovecot refuses root); its helpers run as root here.
mail_uid = mail
mail_gid = mail
first_valid_uid = 1
first_valid_gid = 1
default_login_user = nobody
default_internal_user = root
mail_location = maildir:${dir}/mail/%d/%n/Maildir
mail_plugins = quota
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=100M
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/users
}
userdb {
  driver = passwd-file
  args = username_format=%u ${dir}/users
}
service lmtp {
  inet_listener lmtp {
    address = ${host}
    port = ${lmtpPort}
  }
}
service imap-login {
  inet_listener imap {
    address = ${host}
    port = ${imapPort}
  }
  inet_listener imaps {
    port = 0
  }
}
protocol lmtp {
  mail_plugins = $mail_plugins
}
`;
}

const PY_INBOX = `
import imaplib, json, sys
host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
imap = imaplib.IMAP4(host, port)
imap.login(user, password)
imap.select("INBOX", readonly=True)
typ, data = imap.search(None, "ALL")
out = []
for num in data[0].split():
    typ, msg = imap.fetch(num, "(RFC822)")
    out.append(msg[0][1].decode("utf-8", "replace"))
imap.logout()
print(json.dumps(out))
`;

function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export function privateDovecot(o: {
  dir: string;
  host: string;
  lmtpPort: number;
  imapPort: number;
  users: DovecotUser[];
}): PrivateDovecot {
  const { dir, host, lmtpPort, imapPort } = o;
  const uid = Number(execFileSync('id', ['-u', 'mail']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'mail']).toString().trim());
  mkdirSync(dir, { recursive: true });
  // Dovecot's processes that run as "mail" pass through the test folder to the mail folder.
  for (const d of [path.dirname(dir), dir]) chmodSync(d, 0o755);
  for (const sub of ['run', 'state', 'mail']) mkdirSync(path.join(dir, sub), { recursive: true });
  chownSync(path.join(dir, 'mail'), uid, gid);
  writeFileSync(
    path.join(dir, 'users'),
    o.users
      .map(
        (u) =>
          `${u.address}:{PLAIN}${u.password}::::::${u.quotaRule ? `userdb_quota_rule=${u.quotaRule}` : ''}`,
      )
      .join('\n') + '\n',
  );
  const configFile = path.join(dir, 'dovecot.conf');
  writeFileSync(configFile, dovecotConfig(dir, host, lmtpPort, imapPort));
  let proc: ChildProcess | undefined;
  let exited: Promise<void> | undefined;
  let output = '';
  return {
    dir,
    host,
    lmtpPort,
    imapPort,
    configFile,
    async start() {
      if (proc && proc.exitCode === null) return; // already running
      proc = spawn('dovecot', ['-F', '-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      proc.stdout!.on('data', (d) => (output += d));
      proc.stderr!.on('data', (d) => (output += d));
      const p = proc;
      exited = new Promise((resolve) => p.once('exit', () => resolve()));
      const deadline = Date.now() + 15_000;
      while (!(await portOpen(host, lmtpPort)) || !(await portOpen(host, imapPort))) {
        if (p.exitCode !== null) throw new Error(`dovecot exited: ${output}\n${this.log()}`);
        if (Date.now() > deadline) throw new Error(`dovecot did not listen: ${output}\n${this.log()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      if (proc && proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
      proc = undefined;
    },
    log() {
      try {
        return readFileSync(path.join(dir, 'dovecot.log'), 'utf8');
      } catch {
        return '';
      }
    },
    imapInbox(user) {
      const out = execFileSync(
        'python3',
        ['-c', PY_INBOX, host, String(imapPort), user.address, user.password],
        {
          timeout: 15_000,
        },
      );
      return JSON.parse(out.toString('utf8')) as string[];
    },
  };
}
