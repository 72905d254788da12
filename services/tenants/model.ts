/**
 * What tenants stores (tenants, memberships, invitations) and how it is shown: the documents'
 * types and the views and rows the actions answer, as pure functions of the documents.
 */
import type { Stored, TenantOwned } from "../../mixins/db.mixin";
import {
	DEFAULT_SETTINGS,
	type InvitationExport,
	type InvitationRow,
	type MemberRow,
	type TenantSettings,
	type TenantView,
	type UserView
} from "../../shared/contracts";
import type { Role } from "../../shared/rbac";

/** An organisation. Not tenant-owned: it *is* the tenant (its id is the tenantId elsewhere). */
export interface TenantDoc extends Stored {
	name: string;
	/** Unique across tenants (a unique index decides between simultaneous sign-ups). */
	slug: string;
	/** Missing on documents written before plans were stored: those are "free". */
	plan?: string;
	/** Only what was ever set; the defaults fill the rest when shown. */
	settings?: Partial<TenantSettings>;
}

export interface MembershipDoc extends TenantOwned {
	userId: string;
	role: Role;
	joinedAt: string;
}

export interface InvitationDoc extends TenantOwned {
	email: string;
	role: Role;
	/** sha256 of the emailed token (see ./invitations.ts); the token itself is never stored. */
	tokenHash: string;
	expiresAt: string;
	/** null when an API key invited. */
	invitedBy: string | null;
	/** Set when claimed; unset again if the acceptance then fails. */
	acceptedAt?: string;
}

export function tenantView(doc: TenantDoc): TenantView {
	return {
		id: doc.id,
		name: doc.name,
		slug: doc.slug,
		plan: doc.plan ?? "free",
		createdAt: doc.createdAt,
		settings: { ...DEFAULT_SETTINGS, ...(doc.settings ?? {}) }
	};
}

/** `current` with the given settings applied; absent (undefined) ones keep their value. */
export function mergeSettings(current: TenantSettings, changes: Partial<TenantSettings>): TenantSettings {
	return { ...current, ...Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined)) };
}

/** The fields an update changed, as the audit record and the event name them: `name`, `settings.<key>`. */
export function changedFields(current: TenantView, name: string | undefined, settings: TenantSettings): string[] {
	const keys = Object.keys(settings) as Array<keyof TenantSettings>;
	return [...(name !== undefined && name !== current.name ? ["name"] : []), ...keys.filter(k => settings[k] !== current.settings[k]).map(k => `settings.${k}`)];
}

/** A GET /members row; `user` is the member's account, if it still exists. */
export function memberRow(m: MembershipDoc, user: Pick<UserView, "email" | "name"> | undefined): MemberRow {
	return { userId: m.userId, email: user?.email ?? null, name: user?.name ?? null, role: m.role, joinedAt: m.joinedAt };
}

export function invitationRow({ id, email, role, expiresAt, createdAt }: InvitationDoc): InvitationRow {
	return { id, email, role, expiresAt, createdAt };
}

/** An invitation in the GDPR export: the row and whether it was accepted, never the token hash. */
export function invitationExport({ id, email, role, expiresAt, acceptedAt, createdAt }: InvitationDoc): InvitationExport {
	return { id, email, role, expiresAt, acceptedAt, createdAt };
}
