// NAME      destination: where a remote queue connects
// DESCRIPTION  No I/O here. A domain looked up in DNS, smart hosts, or another server of the
//   organisation, with the per-connector settings that override the virtual server's.

/** Per-destination settings that override the virtual server's (a connector's own). */
export interface OutboundOverrides {
  heloOnly?: boolean;
  tls?: 'opportunistic' | 'required' | 'none';
  verifyCertificate?: boolean;
  /** Credentials for this destination; null: send anonymously whatever the virtual server has. */
  auth?: { username: string; password: string } | null;
  connector?: string;
}

export type Destination = OutboundOverrides &
  (
    | { type: 'dns'; domain: string }
    | { type: 'smarthost'; hosts: string[] }
    | { type: 'server'; name: string; host: string; port: number }
  );
