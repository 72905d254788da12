/**
 * Content items as pure functions: the stored document, the view every answer gives of it, and
 * the checks of what clients send (tags, names from file names, web addresses, edits).
 */
import path from "node:path";
import type { Changes, TenantOwned } from "../../mixins/db.mixin";
import { approvalOf, type ApprovalState } from "../../shared/approval";
import type { ContentProposal, ContentStatus, ContentType, ContentView, MetadataSource } from "../../shared/contracts";
import { Errors } from "../../shared/errors";

export const MAX_TAGS = 50;
const MAX_TAG_LENGTH = 64;
const MAX_NAME_LENGTH = 200;

/** A content item as the `content` collection stores it. */
export interface ContentDoc extends TenantOwned {
	name: string;
	type: ContentType;
	/** Sniffed from the bytes for uploads; text/html for web pages. */
	mimeType: string;
	/** Bytes of the original; 0 for a web page. */
	size: number;
	sha256: string | null;
	width: number | null;
	height: number | null;
	durationMs: number;
	/** Uploads only. */
	metadataSource?: MetadataSource;
	/** Web pages only: the page's http(s) address. */
	url?: string;
	tags: string[];
	validFrom: string | null;
	validUntil: string | null;
	status: ContentStatus;
	/** Set once an upload's original is stored: `tenants/<tenantId>/content/<id>/original.<ext>`. */
	objectKey?: string;
	/** Set with objectKey; null when the upload has no thumbnail (videos). */
	thumbnailKey?: string | null;
	thumbnailSize?: number | null;
	/** The approval workflow's state; absent = approved (before approval, or never required). */
	approval?: ApprovalState;
	/** An editor's change of how it plays, held back until approved. */
	proposal?: ContentProposal | null;
}

/** The fields an approval holds back: they change what screens play. The name and tags apply at once. */
export const PROPOSED_FIELDS = ["durationMs", "validFrom", "validUntil"] as const;

/** The API path of a content item. */
export function contentPath(id: string): string {
	return `/api/v1/content/${id}`;
}

/** What every media answer gives of a content item (API.md's content). */
export function contentView(doc: ContentDoc): ContentView {
	const base = contentPath(doc.id);
	return {
		id: doc.id,
		name: doc.name,
		type: doc.type,
		mimeType: doc.mimeType,
		size: doc.size,
		sha256: doc.sha256 ?? null,
		width: doc.width ?? null,
		height: doc.height ?? null,
		durationMs: doc.durationMs,
		metadataSource: doc.metadataSource ?? null,
		url: doc.type === "web" ? (doc.url ?? null) : doc.objectKey ? `${base}/download` : null,
		thumbnailUrl: doc.thumbnailKey ? `${base}/thumbnail` : null,
		tags: doc.tags ?? [],
		validFrom: doc.validFrom ?? null,
		validUntil: doc.validUntil ?? null,
		status: doc.status,
		approval: approvalOf(doc),
		proposal: doc.proposal ?? null,
		createdAt: doc.createdAt,
		updatedAt: doc.updatedAt
	};
}

/** Bytes an item occupies in storage (original and thumbnail), as the plan counts them. */
export function occupiedBytes(doc: Pick<ContentDoc, "size" | "thumbnailSize">): number {
	return (doc.size || 0) + (doc.thumbnailSize || 0);
}

/** Tags from a list or a comma-separated string: trimmed, without blanks and duplicates; 422 past the limits. */
export function tagList(raw: string | string[] | undefined): string[] {
	const list = Array.isArray(raw) ? raw : (raw ?? "").split(",");
	const tags = [...new Set(list.map(t => t.trim()).filter(Boolean))];
	if (tags.length > MAX_TAGS || tags.some(t => t.length > MAX_TAG_LENGTH)) {
		throw Errors.validation([{ field: "tags", message: `at most ${MAX_TAGS} tags of up to ${MAX_TAG_LENGTH} characters`, type: "tags" }]);
	}
	return tags;
}

/** A display name from a client's file name: no path, no control characters. */
export function nameFromFile(filename: string | undefined): string {
	const base = [...path.basename(String(filename ?? ""))].filter(ch => ch.charCodeAt(0) >= 0x20 && ch.charCodeAt(0) !== 0x7f).join("").trim();
	return (base || "Untitled").slice(0, MAX_NAME_LENGTH);
}

/** An http(s) address without credentials: the only web pages a display may be sent to. */
export function isHttpUrl(value: string): boolean {
	try {
		const url = new URL(value);
		return (url.protocol === "http:" || url.protocol === "https:") && Boolean(url.hostname) && !url.username && !url.password;
	} catch {
		return false;
	}
}

/** What PATCH /content/:id may change; validFrom / validUntil null clears them. */
export interface ContentEdit {
	name?: string;
	tags?: string[];
	durationMs?: number;
	validFrom?: string | null;
	validUntil?: string | null;
}

/**
 * The changes an edit makes to `current`: only the fields it sends, instants normalised to UTC
 * ISO strings. 422 when an instant is not a real one, or when the resulting window (the edit
 * over what is stored) does not end after it starts.
 */
export function contentChanges(current: Pick<ContentDoc, "validFrom" | "validUntil" | "proposal">, edit: ContentEdit): Changes<ContentDoc> {
	const set: Changes<ContentDoc> = {};
	if (edit.name !== undefined) set.name = edit.name;
	if (edit.tags !== undefined) set.tags = tagList(edit.tags);
	if (edit.durationMs !== undefined) set.durationMs = edit.durationMs;
	for (const field of ["validFrom", "validUntil"] as const) {
		const value = edit[field];
		if (value === undefined) continue;
		const at = value === null ? null : new Date(value);
		if (at && Number.isNaN(at.getTime())) throw Errors.validation([{ field, message: "is not a real date and time", type: "date" }]);
		set[field] = at ? at.toISOString() : null;
	}
	// Over what it will be once a pending proposal is approved.
	const base = { validFrom: current.validFrom, validUntil: current.validUntil, ...current.proposal };
	const from = set.validFrom !== undefined ? set.validFrom : (base.validFrom ?? null);
	const until = set.validUntil !== undefined ? set.validUntil : (base.validUntil ?? null);
	if (from && until && from >= until) throw Errors.validation([{ field: "validUntil", message: "must be after validFrom", type: "range" }]);
	return set;
}

/**
 * An editor's edit of an item that plays, under approval: the name and tags apply at once, how it
 * plays joins the pending proposal (over any earlier one) and waits.
 */
export function heldBack(set: Changes<ContentDoc>, current: Pick<ContentDoc, "proposal">): { direct: Changes<ContentDoc>; proposal: ContentProposal | null } {
	const direct: Changes<ContentDoc> = { ...set };
	const proposed: ContentProposal = {};
	for (const field of PROPOSED_FIELDS) {
		if (set[field] === undefined) continue;
		Object.assign(proposed, { [field]: set[field] });
		delete direct[field];
	}
	return { direct, proposal: Object.keys(proposed).length ? { ...current.proposal, ...proposed } : null };
}
