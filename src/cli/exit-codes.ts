// NAME      exit codes: what the exit status of a `bridgehead` command means
// DESCRIPTION
//   One table for every command, documented in docs/operations.md ("Output and exit
//   status"): a script can tell "fix the command" (2) from "try again later" (3) from
//   "look at what was reported" (1).
export const EXIT = {
  /** Done. */
  ok: 0,
  /**
   * Not (fully) done, and what went wrong was reported: some of a bulk action refused, some
   * servers of the organisation did not answer, an invalid organisation file, a server
   * fault (HTTP 5xx), an internal error.
   */
  failed: 1,
  /**
   * Refused: a wrong command line (unknown command or option, missing argument or choice,
   * unknown event name), nothing by that name (queue, message, server, logging category),
   * or the server said no (HTTP 4xx, a token refused).
   */
  refused: 2,
  /** No admin API answered: the server is not running or not reachable at that URL. */
  unreachable: 3,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The table as `bridgehead --help` ends with it. */
export const EXIT_HELP = `
Exit status:
  0  done
  1  not done, or only partly, and reported: some of a bulk delete refused, some servers
     did not answer (track --config), an invalid organisation file, a server fault (5xx)
  2  refused: a wrong command line, an unknown event, nothing by that name (queue,
     message, server, logging category), the server said no (HTTP 4xx)
  3  no server reached: the admin API does not answer at that URL
`;
