/**
 * A problem the user fixes (not root, a tool missing, a subnet that collides,
 * an unknown machine): the message says how. The CLI prints it without a
 * stack trace and exits with EXIT.usage.
 */
export class LabUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LabUsageError';
  }
}
