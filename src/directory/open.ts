// NAME      open: the directory backend the organisation file chooses
// SYNOPSIS  const directory = openDirectory(org.directory, { baseDir, serverName })
// DESCRIPTION
//   embedded -> the users, contacts and groups of the organisation file (or directory.file);
//   ldap -> LdapDirectory, its bind password read from bindPasswordFile and its CA file,
//   both relative to the organisation file's folder.
// DIAGNOSTICS  an unreadable password or CA file is a TransportError 4.3.5 (configuration).
import fs from 'node:fs';
import path from 'node:path';
import type { OrganisationConfig } from '../config/schema.js';
import { TransportError } from '../message/status.js';
import { EmbeddedDirectory, type Directory } from './directory.js';
import { LdapDirectory } from './ldap-directory.js';

export type OpenedDirectory = Directory & {
  close?: () => Promise<void>;
  counters?: LdapDirectory['counters'];
};

export function openDirectory(
  directory: OrganisationConfig['directory'],
  where: { baseDir: string; serverName: string },
): OpenedDirectory {
  if (directory.backend !== 'ldap' || !directory.ldap) return new EmbeddedDirectory(directory);
  const ldap = directory.ldap;
  const read = (file: string, what: string) => {
    const full = path.resolve(where.baseDir, file);
    try {
      return fs.readFileSync(full, 'utf8');
    } catch (err) {
      throw new TransportError(
        451,
        '4.3.5',
        `cannot read the LDAP ${what} ${full}: ${(err as Error).message}`,
      );
    }
  };
  const bindPassword = ldap.bindPasswordFile
    ? read(ldap.bindPasswordFile, 'bind password file').split(/\r?\n/)[0]
    : undefined;
  const caFile = ldap.caFile ? path.resolve(where.baseDir, ldap.caFile) : undefined;
  if (caFile) read(caFile, 'CA file');
  return new LdapDirectory(
    { ...ldap, ...(caFile ? { caFile } : {}) },
    { serverName: where.serverName, ...(bindPassword !== undefined ? { bindPassword } : {}) },
  );
}
