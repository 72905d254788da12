/**
 * Audit records: every state-changing request sends one on the durable channel `audit.record`
 * (JetStream in production, in-process in the embedded mode); the analytics service stores and
 * serves them. The actor, ip and request id come from the gateway's meta, never from the client.
 */
import type { Context } from "moleculer";
import { AUDIT_CHANNEL } from "./channels";
import { sendToChannel, type AuditRecord } from "./contracts";
import { newId } from "./ids";
import type { Principal } from "./rbac";

export { AUDIT_CHANNEL };
export type { AuditRecord };


interface AuditMeta {
	auth?: Principal | null;
	ip?: string;
	requestId?: string;
}


export interface AuditEntry {
	action: string;
	target?: string | null;
	/** The tenant the action happened in; defaults to the caller's. */
	tenantId?: string;
	/** The actor when the caller is not (yet) authenticated, e.g. the user who just logged in. */
	actor?: AuditRecord["actor"];
	/** Extra facts; never secrets (tokens, passwords, hashes). */
	data?: Record<string, unknown>;
}

function actorOf(auth: Principal | null | undefined): AuditRecord["actor"] {
	if (!auth) return { kind: "anonymous", id: null };
	return { kind: auth.kind, id: auth.userId ?? auth.apiKeyId ?? auth.displayId ?? null };
}

/** Sends one audit record; resolves once the channel has accepted it. */
export async function audit(ctx: Context, entry: AuditEntry): Promise<void> {
	const meta = ctx.meta as AuditMeta;
	const tenantId = entry.tenantId ?? meta.auth?.tenantId;
	if (!tenantId) return;
	const record: AuditRecord = {
		id: newId(),
		tenantId,
		ts: new Date().toISOString(),
		actor: entry.actor ?? actorOf(meta.auth),
		action: entry.action,
		target: entry.target ?? null,
		ip: meta.ip ?? null,
		requestId: meta.requestId ?? ctx.requestID ?? null,
		data: entry.data ?? {}
	};
	await sendToChannel(ctx.broker, AUDIT_CHANNEL, record);
}
