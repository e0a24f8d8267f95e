// The one HTTP client of the admin API for `bridgehead` commands that talk to a running
// server: where the API is (--api, --config/--server, $BRIDGEHEAD_API, else the default),
// the bearer token (--token, $BRIDGEHEAD_TOKEN), JSON in and out, and one readable CliError
// for every way a call fails: the server not reached, or an answer 4xx/5xx (401/403 a
// token refused, 404 nothing there, any other) with the text the server gave and the HTTP
// status. `run` (commands.ts) prints a CliError's message and exits with status 2.
import type { Command } from 'commander';
import { allServers, loadConfigFile } from '../config/load.js';

export class CliError extends Error {}

/** The options every admin-API command takes (see withApi). */
export interface ApiOptions {
  api?: string;
  token?: string;
  config?: string;
  server?: string;
  json?: boolean;
}

/** One server's admin API: a name for messages and its base URL (no trailing slash). */
export interface Endpoint {
  name: string;
  url: string;
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
    .option('--token <token>', 'bearer token (default $BRIDGEHEAD_TOKEN)')
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
  if (o.api) return [{ name: o.api, url: o.api.replace(/\/$/, '') }];
  if (process.env.BRIDGEHEAD_API && !o.config) return [{ name: 'api', url: process.env.BRIDGEHEAD_API }];
  if (o.config) {
    const servers = allServers(loadConfigFile(o.config).org).map((s) => s.server);
    const chosen = o.server
      ? servers.filter((s) => s.name.toLowerCase() === o.server!.toLowerCase())
      : allOfOrg
        ? servers
        : servers.slice(0, 1);
    if (!chosen.length) throw new CliError(`no server "${o.server}" in ${o.config}`);
    return chosen.map((s) => {
      const host = s.adminApi.host === '0.0.0.0' ? s.address : s.adminApi.host;
      return { name: s.name, url: `http://${host.includes(':') ? `[${host}]` : host}:${s.adminApi.port}` };
    });
  }
  return [{ name: 'local', url: 'http://127.0.0.1:8025' }];
}

export class AdminClient {
  constructor(
    readonly endpoint: Endpoint,
    private readonly token: string | undefined = process.env.BRIDGEHEAD_TOKEN,
    /** Give up after this long (a server that accepts and never answers); none by default. */
    private readonly timeoutMs?: number,
  ) {}

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
          ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        ...(this.timeoutMs ? { signal: AbortSignal.timeout(this.timeoutMs) } : {}),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new CliError(
        `cannot reach the admin API of ${name} at ${url} (${cause}); is the server running?`,
      );
    }
    const type = res.headers.get('content-type') ?? '';
    if (type.includes('application/json')) {
      const json = (await res.json()) as { error?: string };
      if (res.status >= 400)
        throw new CliError(`${name}: ${json.error ?? res.statusText} (HTTP ${res.status})`);
      return { status: res.status, json };
    }
    const bytes = Buffer.from(await res.arrayBuffer());
    if (res.status >= 400) throw new CliError(`${name}: HTTP ${res.status} ${bytes.toString()}`);
    return { status: res.status, bytes };
  }
}
