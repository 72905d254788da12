/** media: content items and their bytes. */
import type { Readable } from "node:stream";
import { Type, type Static } from "@sinclair/typebox";
import { ApprovalView, Id, Instant, Nullable, PageOf, type ApprovalDecisionParams, type ApprovalStatus, type ExportParams, type PageParams, type PageView } from "./views";

/** API.md's content types. Uploads are "image" or "video" (decided from the bytes), web pages "web". */
export const ContentType = Type.Union([Type.Literal("image"), Type.Literal("video"), Type.Literal("web"), Type.Literal("html")]);
export type ContentType = Static<typeof ContentType>;

/** "processing" while an upload's objects are being stored, "ready" once they are. */
export const ContentStatus = Type.Union([Type.Literal("ready"), Type.Literal("processing"), Type.Literal("failed")]);
export type ContentStatus = Static<typeof ContentStatus>;

/**
 * Where an upload's width, height and duration came from: the file itself (images), ffprobe
 * (videos), or the client's `durationMs` / the default when ffprobe could not tell (videos).
 */
export const MetadataSource = Type.Union([Type.Literal("file"), Type.Literal("ffprobe"), Type.Literal("client")]);
export type MetadataSource = Static<typeof MetadataSource>;

/** API.md's content item, exactly as every media answer gives it. */
/** What of a content item an approval holds back: how and when it plays. */
export const ContentProposal = Type.Object({
	durationMs: Type.Optional(Type.Integer({ minimum: 1 })),
	validFrom: Type.Optional(Nullable(Instant)),
	validUntil: Type.Optional(Nullable(Instant))
});
export type ContentProposal = Static<typeof ContentProposal>;

export const ContentView = Type.Object({
	id: Id,
	name: Type.String(),
	type: ContentType,
	mimeType: Type.String(),
	/** Bytes of the original; 0 for a web page. */
	size: Type.Integer({ minimum: 0 }),
	/** Hex SHA-256 of the original; null for a web page. */
	sha256: Nullable(Type.String()),
	width: Nullable(Type.Integer()),
	height: Nullable(Type.Integer()),
	durationMs: Type.Integer({ minimum: 1 }),
	/** null for a web page. */
	metadataSource: Nullable(MetadataSource),
	/** A web page's address, or the download path of a stored file; null until an upload is stored. */
	url: Nullable(Type.String()),
	/** The thumbnail's path (images); null when there is none. */
	thumbnailUrl: Nullable(Type.String()),
	tags: Type.Array(Type.String()),
	validFrom: Nullable(Instant),
	validUntil: Nullable(Instant),
	status: ContentStatus,
	/** The approval workflow (settings.contentApproval); "approved" and live when the tenant has none. */
	approval: ApprovalView,
	/** An editor's change waiting for approval (what plays stays as above until then); null when none. */
	proposal: Nullable(ContentProposal),
	createdAt: Instant,
	updatedAt: Instant
});
export type ContentView = Static<typeof ContentView>;

/** GET /content. */
export const ContentPage = PageOf(ContentView);
export type ContentPage = PageView<ContentView>;

/** GET /content/usage: bytes stored (originals and thumbnails) and the plan's limit. */
export const ContentUsage = Type.Object({ storageBytes: Type.Integer({ minimum: 0 }), limitBytes: Type.Integer({ minimum: 0 }) });
export type ContentUsage = Static<typeof ContentUsage>;

/**
 * The body of a download or thumbnail answered by the gateway itself (200, the default: no
 * S3_PUBLIC_ENDPOINT): the object's bytes, typed as the content's mimeType. With a public
 * endpoint the same routes answer 302 to a presigned URL without a body (the handler's null).
 */
export const ContentBytes = Type.Unsafe<Readable>({ type: "string", format: "binary" });
/** A download's answer: the bytes, or null for the 302. */
export type ContentFile = Readable | null;

/** media's part of a tenant export. */
export const MediaExport = Type.Object({ content: Type.Array(ContentView) });
export type MediaExport = Static<typeof MediaExport>;

/** POST /content: multipart fields (form fields or query string); the file is the call's stream. */
export interface UploadParams {
	name?: string;
	/** Comma separated. */
	tags?: string;
	durationMs?: number;
	/** The client's file name and declared type (moleculer-web's multipart fields); the type is not trusted. */
	$filename?: string;
	$mimetype?: string;
}

export interface MediaActions {
	"media.upload": { params: UploadParams; result: ContentView };
	"media.createUrl": { params: { name: string; url: string; durationMs: number; tags?: string[] }; result: ContentView };
	"media.list": { params: PageParams & { type?: ContentType; tag?: string; q?: string; approval?: Exclude<ApprovalStatus, "approved"> }; result: ContentPage };
	"media.usage": { params: Record<string, never>; result: ContentUsage };
	"media.get": { params: { id: string }; result: ContentView };
	/** validFrom / validUntil: an ISO instant, or null to clear it. */
	"media.update": {
		params: { id: string; name?: string; tags?: string[]; durationMs?: number; validFrom?: string | null; validUntil?: string | null };
		result: ContentView;
	};
	"media.remove": { params: { id: string }; result: null };
	/** An admin's decision on the pending change (409 when none is pending). */
	"media.approve": { params: ApprovalDecisionParams; result: ContentView };
	"media.reject": { params: ApprovalDecisionParams & { comment: string }; result: ContentView };
	"media.download": { params: { id: string }; result: ContentFile };
	"media.thumbnail": { params: { id: string }; result: ContentFile };
	/** A display's download of content in its current manifest. */
	"media.deviceDownload": { params: { contentId: string }; result: ContentFile };
	/** A tenant's content items by id (unknown ids are left out). */
	"media.byIds": { params: { tenantId: string; ids: string[] }; result: ContentView[] };
	/** Usage of the tenant's storageBytes from its counter. */
	"media.quotaUsage": { params: { tenantId: string }; result: number };
	"media.exportTenantData": { params: ExportParams; result: MediaExport };
}

export interface MediaEvents {
	"media.content.created": { tenantId: string; contentId: string };
	/** `fields`: the fields the update set (name, tags, durationMs, validFrom, validUntil, approval). */
	"media.content.updated": { tenantId: string; contentId: string; fields: string[] };
	"media.content.deleted": { tenantId: string; contentId: string };
}
