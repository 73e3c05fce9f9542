import type { ChangeAction, ChangeTarget } from './change.js';

/**
 * Progress as typed events (STYLE.md 9). The engine emits them; the CLI's
 * renderers (tree, plain lines, JSON lines) and library users subscribe.
 */
export type EngineEvent =
  | { type: 'connect'; host: string; address: string }
  | { type: 'facts'; host: string; os: string; arch: string }
  | { type: 'phase-start'; phase: string; title: string; hosts: string[] }
  | { type: 'phase-done'; phase: string; changed: number; ms: number }
  | { type: 'host-start'; phase: string; host: string; changes: number }
  | { type: 'change-start'; phase: string; host: string; summary: string; action?: ChangeAction; target?: ChangeTarget }
  | { type: 'change-done'; phase: string; host: string; summary: string; action?: ChangeAction; target?: ChangeTarget; ms: number }
  | { type: 'host-done'; phase: string; host: string; ms: number }
  | { type: 'host-failed'; phase: string; host: string; error: string }
  | { type: 'wait'; phase: string; host: string; message: string }
  | { type: 'warning'; host?: string; phase?: string; message: string }
  | { type: 'info'; host?: string; phase?: string; message: string };

export type EventSink = (e: EngineEvent) => void;

export const noEvents: EventSink = () => {};
