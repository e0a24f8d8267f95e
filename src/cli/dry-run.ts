// NAME      dry run: the categorizer as a server would run it, for commands that only look
// SYNOPSIS  dryRunCategorizer(org, server, directory)
// DESCRIPTION
//   `route test` and `directory lookup` resolve an address without a queue: the same
//   Categorizer the server builds (its accepted domains and forwardUnresolvedTo), with no
//   organisation limits, since nothing is sent.
import { Categorizer } from '../categorizer/categorizer.js';
import { outboundSettings } from '../config/outbound.js';
import type { OrganisationConfig, ServerConfig } from '../config/schema.js';
import { AcceptedDomains } from '../directory/accepted-domains.js';
import type { Directory } from '../directory/directory.js';

export function dryRunCategorizer(
  org: OrganisationConfig,
  server: ServerConfig,
  directory: Directory,
): Categorizer {
  return new Categorizer({
    serverName: server.name,
    directory,
    acceptedDomains: new AcceptedDomains(org.recipientPolicies),
    forwardUnresolvedTo: outboundSettings(server).messages.forwardUnresolvedTo,
    orgMaxRecipients: null,
    orgMaxReceiveSizeKb: null,
    orgMaxSendSizeKb: null,
    maxHopCount: 1000,
  });
}
