// NAME      organisation authentication: servers of the organisation log in to each other
// DESCRIPTION
//   Servers authenticate to each other with their name and the shared organisation secret
//   (compared in constant time); an authenticated server may submit and relay, as Exchange
//   servers do. Every other login goes to the directory.
import { timingSafeEqual } from 'node:crypto';
import type { LoadedConfig } from '../config/load.js';
import { allServers } from '../config/load.js';
import type { Directory } from '../directory/directory.js';

export function organisationAuthentication(directory: Directory, org: LoadedConfig['org']): Directory {
  const secret = org.organisation.secret;
  const names = new Set(allServers(org).map((s) => s.server.name.toLowerCase()));
  return {
    findByAddress: (a) => directory.findByAddress(a),
    findByName: (n) => directory.findByName(n),
    async authenticate(login, password) {
      if (secret && names.has(login.toLowerCase())) {
        const given = Buffer.from(password);
        const expected = Buffer.from(secret);
        if (given.length === expected.length && timingSafeEqual(given, expected)) {
          return {
            name: login.toUpperCase(),
            primaryAddress: '',
            permissions: { submit: 'allow', relay: 'allow' },
          };
        }
        return undefined;
      }
      return directory.authenticate(login, password);
    },
    // Servers log in with the secret (PLAIN / LOGIN); they have no SCRAM verifier.
    scramCredentials: (login) =>
      names.has(login.toLowerCase()) ? Promise.resolve(undefined) : directory.scramCredentials(login),
  };
}
