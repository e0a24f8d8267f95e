// The one HTTP client of the admin API for `bridgehead` commands that talk to a running
// server: where the API is (--api, --config/--server, $BRIDGEHEAD_API, else the default),
// the bearer token (--token, $BRIDGEHEAD_TOKEN, else the server's <dataDir>/admin.token:
// --data-dir, the --config server's dataDir, or ./var for the default API), JSON in and
// out, and one readable CliError for every way a call fails: the server not reached, or an
// answer 4xx/5xx (401/403 a token refused, with why no good token was sent; 404 nothing
// there, any other) with the text the server gave and the HTTP status. `run` (commands.ts)
// prints a CliError's message and exits with its exit code (exit-codes.ts): 3 not reached,
// 2 refused (4xx), 1 a server fault (5xx).
// SECURITY  the token file is read only for the server it belongs to (never sent to a URL
//           given alone with --api or $BRIDGEHEAD_API unless --data-dir names the file).
import path from 'node:path';
import type { Command } from 'commander';
import { allServers, loadConfigFile } from '../config/load.js';
import { ADMIN_TOKEN_FILE, readAdminToken } from '../admin/token.js';
import { EXIT, type ExitCode } from './exit-codes.js';

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.refused,
  ) {
    super(message);
  }
}

/** The options every admin-API command takes (see withApi). */
export interface ApiOptions {
  api?: string;
  token?: string;
  config?: string;
  server?: string;
  dataDir?: string;
  json?: boolean;
}

/** One server's admin API: a name for messages and its base URL (no trailing slash). */
export interface Endpoint {
  name: string;
  url: string;
  /** The server's <dataDir>/admin.token, read when no token is given. */
  tokenFile?: string;
}

/** What a call answered: JSON when the server said so, else the bytes. */
interface Answer {
  status: number;
  json?: unknown;
  bytes?: Buffer;
}

/** Adds the options that say which admin API to talk to, and --json. */
export function withApi(cmd: Command): Command {
  return cmd
    .option(
      '--api <url>',
      'admin API URL (default: from --config, $BRIDGEHEAD_API, or http://127.0.0.1:8025)',
    )
    .option(
      '--token <token>',
      "bearer token (default $BRIDGEHEAD_TOKEN, else the server's data directory/admin.token)",
    )
    .option('-d, --data-dir <dir>', "the server's data directory: send the token of its admin.token")
    .option('-c, --config <file>', 'organisation file: talk to its server(s)')
    .option('-s, --server <name>', 'the server of the organisation to talk to')
    .option('--json', 'print JSON');
}

/**
 * Which admin APIs to talk to: --api, else $BRIDGEHEAD_API (unless --config), else the
 * config's server named by --server (or its first server, or with allOfOrg every server),
 * else the default.
 */
export function endpoints(o: ApiOptions, allOfOrg = false): Endpoint[] {
  const given = o.dataDir ? { tokenFile: path.resolve(o.dataDir, ADMIN_TOKEN_FILE) } : {};
  if (o.api) return [{ name: o.api, url: o.api.replace(/\/$/, ''), ...given }];
  if (process.env.BRIDGEHEAD_API && !o.config) {
    const url = process.env.BRIDGEHEAD_API.replace(/\/$/, '');
    return [{ name: url, url, ...given }];
  }
  if (o.config) {
    const loaded = loadConfigFile(o.config);
    const servers = allServers(loaded.org).map((s) => s.server);
    const chosen = o.server
      ? servers.filter((s) => s.name.toLowerCase() === o.server!.toLowerCase())
      : allOfOrg
        ? servers
        : servers.slice(0, 1);
    if (!chosen.length) throw new CliError(`no server "${o.server}" in ${o.config}`);
    return chosen.map((s) => {
      const host = s.adminApi.host === '0.0.0.0' ? s.address : s.adminApi.host;
      return {
        name: s.name,
        url: `http://${host.includes(':') ? `[${host}]` : host}:${s.adminApi.port}`,
        tokenFile: given.tokenFile ?? path.resolve(loaded.baseDir, s.dataDir, ADMIN_TOKEN_FILE),
      };
    });
  }
  // The embedded defaults: `bridgehead serve` without --config keeps its data in ./var.
  return [
    {
      name: 'http://127.0.0.1:8025',
      url: 'http://127.0.0.1:8025',
      tokenFile: given.tokenFile ?? path.resolve('var', ADMIN_TOKEN_FILE),
    },
  ];
}

/** The token to send: given explicitly, else the one in the server's token file. */
interface Credentials {
  token?: string;
  /** Why a refusal happened, for the 401/403 message. */
  hint: string;
}

function credentials(endpoint: Endpoint, explicit: string | undefined): Credentials {
  if (explicit) return { token: explicit, hint: '' };
  const file = endpoint.tokenFile;
  if (!file) {
    return {
      hint:
        "; no token given: use --token or $BRIDGEHEAD_TOKEN, or --data-dir DIR (the server's " +
        'data directory, whose admin.token the server requires)',
    };
  }
  const read = readAdminToken(file);
  if ('token' in read)
    return {
      token: read.token,
      hint: `; the token in ${file} was refused: is it this server's data directory?`,
    };
  if (read.error === 'ENOENT') {
    return {
      hint:
        `; no token given and no ${file}: use --token or $BRIDGEHEAD_TOKEN, or --data-dir DIR ` +
        "(the server's data directory)",
    };
  }
  return {
    hint:
      `; cannot read ${file} (${read.error}): run the command as the server's user (or root), ` +
      'or give --token or $BRIDGEHEAD_TOKEN',
  };
}

export class AdminClient {
  private readonly credentials: Credentials;

  constructor(
    readonly endpoint: Endpoint,
    token: string | undefined = process.env.BRIDGEHEAD_TOKEN,
    /** Give up after this long (a server that accepts and never answers); none by default. */
    private readonly timeoutMs?: number,
  ) {
    this.credentials = credentials(endpoint, token);
  }

  /** The client of the one server the options name. */
  static of(o: ApiOptions): AdminClient {
    return new AdminClient(endpoints(o)[0]!, o.token ?? process.env.BRIDGEHEAD_TOKEN);
  }

  /** A client for each server the options name; with --config and no --server, every one. */
  static ofEach(o: ApiOptions): AdminClient[] {
    return endpoints(o, true).map((ep) => new AdminClient(ep, o.token ?? process.env.BRIDGEHEAD_TOKEN));
  }

  get name(): string {
    return this.endpoint.name;
  }

  async get(path: string): Promise<unknown> {
    return (await this.request('GET', path)).json;
  }

  async post(path: string, body?: unknown): Promise<unknown> {
    return (await this.request('POST', path, body)).json;
  }

  async put(path: string, body?: unknown): Promise<unknown> {
    return (await this.request('PUT', path, body)).json;
  }

  async delete(path: string): Promise<unknown> {
    return (await this.request('DELETE', path)).json;
  }

  /** A GET whose answer is not JSON (a message's .eml). */
  async bytes(path: string): Promise<Buffer> {
    return (await this.request('GET', path)).bytes ?? Buffer.alloc(0);
  }

  private async request(method: string, path: string, body?: unknown): Promise<Answer> {
    const { name, url } = this.endpoint;
    let res: Response;
    try {
      res = await fetch(`${url}${path}`, {
        method,
        headers: {
          ...(this.credentials.token ? { authorization: `Bearer ${this.credentials.token}` } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        ...(this.timeoutMs ? { signal: AbortSignal.timeout(this.timeoutMs) } : {}),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      // The URL once: a server named only by its URL (--api) is not named twice.
      const where = name === url ? `at ${url}` : `of ${name} at ${url}`;
      throw new CliError(
        `cannot reach the admin API ${where} (${cause}); is the server running?`,
        EXIT.unreachable,
      );
    }
    const refused = res.status >= 500 ? EXIT.failed : EXIT.refused;
    const type = res.headers.get('content-type') ?? '';
    if (type.includes('application/json')) {
      const json = (await res.json()) as { error?: string };
      const hint = res.status === 401 ? this.credentials.hint : '';
      if (res.status >= 400)
        throw new CliError(`${name}: ${json.error ?? res.statusText} (HTTP ${res.status})${hint}`, refused);
      return { status: res.status, json };
    }
    const bytes = Buffer.from(await res.arrayBuffer());
    if (res.status >= 400) throw new CliError(`${name}: HTTP ${res.status} ${bytes.toString()}`, refused);
    return { status: res.status, bytes };
  }
}
