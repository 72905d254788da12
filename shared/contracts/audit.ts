/** The durable audit channel's message (shared/audit.ts sends it; analytics stores it). */
import type { Principal } from "../rbac";

export interface AuditRecord {
	/** Unique per record: a redelivered record is stored once. Optional only for records queued before it existed. */
	id?: string;
	tenantId: string;
	ts: string;
	actor: { kind: Principal["kind"] | "anonymous"; id: string | null };
	action: string;
	target: string | null;
	ip: string | null;
	requestId: string | null;
	data: Record<string, unknown>;
}
