// NAME      queue admin: the viewer and the operations, as the admin API sees them
import type { QueueViewer } from './viewer.js';
import type { QueueOperations } from './operations.js';

export type { QueueSummary, MessageSummary, FindQuery } from './viewer.js';
export type { RetryReport, HeldReport } from './retry-report.js';
export type { QueueState } from '../names.js';

export type QueueAdmin = Pick<QueueViewer, 'listQueues' | 'findMessages' | 'getMessage'> &
  Pick<
    QueueOperations,
    'freezeQueue' | 'freezeMessage' | 'deleteMessage' | 'exportMessage' | 'retryNow' | 'queueExists'
  >;
