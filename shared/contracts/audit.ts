/** The durable audit channel's message (shared/audit.ts sends it; analytics stores it). */
import type { Principal } from "../rbac";

export interface AuditRecord {
	tenantId: string;
	ts: string;
	actor: { kind: Principal["kind"] | "anonymous"; id: string | null };
	action: string;
	target: string | null;
	ip: string | null;
	requestId: string | null;
	data: Record<string, unknown>;
}
