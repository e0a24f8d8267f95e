// Event ids the diagnostic log uses, as the administrators' NDR table [002] and the guide's
// routing chapters [003:6350-6467] give them, so that searches written for them still work.

/** NDR status → event id and severity [002 "NDR status codes and corresponding error conditions"]. */
export const NDR_EVENTS: Record<string, { id: number; severity: 'Error' | 'Warning' | 'Informational' }> = {
  '4.3.1': { id: 3001, severity: 'Error' },
  '4.3.2': { id: 3002, severity: 'Informational' },
  '4.4.1': { id: 3003, severity: 'Warning' },
  '4.4.2': { id: 3304, severity: 'Warning' },
  '4.4.6': { id: 3005, severity: 'Error' },
  '4.4.7': { id: 3006, severity: 'Warning' },
  '4.4.9': { id: 3007, severity: 'Error' },
  '5.0.0': { id: 3008, severity: 'Error' },
  '5.1.0': { id: 3009, severity: 'Error' },
  '5.1.1': { id: 3028, severity: 'Informational' },
  '5.1.2': { id: 3031, severity: 'Error' },
  '5.1.3': { id: 3010, severity: 'Error' },
  '5.1.4': { id: 3029, severity: 'Error' },
  '5.1.6': { id: 3011, severity: 'Error' },
  '5.1.7': { id: 3012, severity: 'Error' },
  '5.2.1': { id: 3013, severity: 'Warning' },
  '5.2.2': { id: 3000, severity: 'Informational' },
  '5.2.3': { id: 3014, severity: 'Warning' },
  '5.2.4': { id: 3032, severity: 'Error' },
  '5.3.0': { id: 3015, severity: 'Error' },
  '5.3.3': { id: 3016, severity: 'Warning' },
  '5.3.5': { id: 3017, severity: 'Error' },
  '5.4.0': { id: 3018, severity: 'Error' },
  '5.4.4': { id: 3019, severity: 'Error' },
  '5.4.6': { id: 3020, severity: 'Error' },
  '5.4.8': { id: 3021, severity: 'Error' },
  '5.5.0': { id: 3022, severity: 'Warning' },
  '5.5.2': { id: 3023, severity: 'Error' },
  '5.5.3': { id: 3024, severity: 'Informational' },
  '5.5.4': { id: 3025, severity: 'Error' },
  '5.5.6': { id: 3026, severity: 'Error' },
  '5.7.1': { id: 3027, severity: 'Informational' },
  '5.7.3': { id: 3033, severity: 'Error' },
};

/** Link state and routing events [003:6350-6467]. */
export const ROUTING_EVENTS = {
  masterGone: 958,
  memberAuthFailed: 961,
  memberAuthenticated: 995,
  resetRoutes: 4005,
} as const;

export function ndrEvent(status: string): { id: number; severity: 'Error' | 'Warning' | 'Informational' } {
  return NDR_EVENTS[status] ?? NDR_EVENTS[`${status[0]}.0.0`] ?? { id: 3008, severity: 'Error' };
}
