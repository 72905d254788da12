/**
 * Remote commands. The documents are the record (the CMS lists them with their status); the
 * display's pending list in the key/value store (`commands:<id>`) is what the heartbeat reads,
 * so the hot path touches no document. A command stays in the list — and in every heartbeat's
 * answer — until the screen acknowledges it or it expires; `delivered` only records that a
 * heartbeat has carried it once, so its document is marked delivered once.
 */
import type { TenantOwned } from "../../mixins/db.mixin";
import type { CommandStatus, CommandSummary, CommandType, CommandView } from "../../shared/contracts";
import type { KeyValueStore } from "../../shared/kv";

export const COMMAND_TTL_MS = 24 * 3600_000;

export interface CommandDoc extends TenantOwned {
	displayId: string;
	type: CommandType;
	/** "expired" is written by the sweep; a view shows it as soon as `expiresAt` has passed. */
	status: CommandStatus;
	expiresAt: string;
	deliveredAt: string | null;
	acknowledgedAt: string | null;
	result: string | null;
}

/** A command waiting in a display's list. */
export interface PendingCommand {
	id: string;
	type: CommandType;
	createdAt: string;
	expiresAt: string;
	/** A heartbeat has carried it (its document says so). */
	delivered?: boolean;
}

export const commandsKey = (displayId: string) => `commands:${displayId}`;

// ---- pure ------------------------------------------------------------------------------------

export function commandView(doc: CommandDoc, now: Date): CommandView {
	const expired = doc.status !== "acknowledged" && doc.expiresAt <= now.toISOString();
	return {
		id: doc.id,
		type: doc.type,
		status: expired ? "expired" : doc.status,
		createdAt: doc.createdAt,
		deliveredAt: doc.deliveredAt,
		acknowledgedAt: doc.acknowledgedAt,
		expiresAt: doc.expiresAt,
		result: doc.result
	};
}

export function pendingOf(doc: CommandDoc): PendingCommand {
	return { id: doc.id, type: doc.type, createdAt: doc.createdAt, expiresAt: doc.expiresAt };
}

/** What a heartbeat at `at` hands the screen (the unexpired commands), and which of them it carries for the first time. */
export function dueCommands(pending: PendingCommand[], at: string): { commands: CommandSummary[]; firstDelivered: string[] } {
	const live = pending.filter(c => c.expiresAt > at);
	return {
		commands: live.map(({ id, type, createdAt }) => ({ id, type, createdAt })),
		firstDelivered: live.filter(c => !c.delivered).map(c => c.id)
	};
}

export function markDelivered(pending: PendingCommand[], ids: string[]): PendingCommand[] {
	return pending.map(c => (ids.includes(c.id) ? { ...c, delivered: true } : c));
}

export function withoutCommand(pending: PendingCommand[], id: string): PendingCommand[] {
	return pending.filter(c => c.id !== id);
}

// ---- the store -------------------------------------------------------------------------------

export async function pendingCommands(kv: KeyValueStore, displayId: string): Promise<PendingCommand[]> {
	return parsePendingCommands(await kv.get(commandsKey(displayId)));
}

/** A display's list as stored at `commandsKey` (read alongside other keys by the heartbeat). */
export function parsePendingCommands(raw: string | null): PendingCommand[] {
	return raw ? (JSON.parse(raw) as PendingCommand[]) : [];
}

/** An empty list is no key at all. */
export async function setPendingCommands(kv: KeyValueStore, displayId: string, commands: PendingCommand[]): Promise<void> {
	if (commands.length === 0) await kv.del(commandsKey(displayId));
	else await kv.set(commandsKey(displayId), JSON.stringify(commands), COMMAND_TTL_MS);
}

/** Reads a display's list, changes it, writes it back. */
export async function updatePendingCommands(kv: KeyValueStore, displayId: string, change: (pending: PendingCommand[]) => PendingCommand[]): Promise<void> {
	await setPendingCommands(kv, displayId, change(await pendingCommands(kv, displayId)));
}
