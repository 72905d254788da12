/**
 * Media: content items and their objects. Uploads arrive as a multipart stream through the
 * gateway, are received into a temporary file (type sniffed from the bytes, SHA-256 and size
 * computed on the way, limits enforced mid-stream), probed (image dimensions and thumbnail,
 * video duration), and only then stored under `tenants/<tenantId>/content/<id>/`. Web pages
 * are content too. Downloads answer 302 to a short-lived presigned URL when S3_PUBLIC_ENDPOINT
 * is set, and stream the bytes otherwise (the default).
 *
 * The content document, its view and the checks of client input are pure functions in
 * services/media/content.ts; receiving, sniffing and probing uploads live beside it. Completed
 * uploads count their bytes by type (shared/ops-metrics.ts).
 *
 * Under the tenant's content approval (shared/approval.ts) an editor's new item waits as pending,
 * and an editor's change of how an approved item plays waits as its proposal; admins approve or
 * reject (POST /content/:id/approve|reject). Manifests play only approved items.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DbMixin, systemScope, tenantCollection, tenantOf, textSearch, type Changes, type DbVars, type Query } from "../mixins/db.mixin";
import { actorOf, approvalOf, approvalRequired, decided, DECISION_PARAMS, isLive, needsApproval, requested } from "../shared/approval";
import { audit } from "../shared/audit";
import { TENANT_DELETED_CHANNEL } from "../shared/channels";
import { getConfig, type Config } from "../shared/config";
import {
	publishEvent,
	broadcast,
	call,
	ContentBytes,
	ContentPage,
	ContentUsage,
	ContentView,
	type ActionCtx,
	type ApprovalDecisionParams,
	type ChannelCtx,
	type ContentFile,
	type MetadataSource,
	type Result
} from "../shared/contracts";
import { Errors } from "../shared/errors";
import { ID_RULE, newId } from "../shared/ids";
import { FILE_ANSWERS } from "../shared/openapi";
import { opsCounter, OPS_METRICS, type OpsCounter } from "../shared/ops-metrics";
import { planLimit, publishQuotaWarning, USAGE_COLLECTION, UsageCounter } from "../shared/quota";
import { ISO_INSTANT_RULE, multipartRest, NAME_RULE, PAGE_PARAMS, type RequestMeta } from "../shared/request";
import { acquireStorage, releaseStorage, Storage, tenantKey } from "../shared/storage";
import { contentChanges, contentPath, contentView, heldBack, isHttpUrl, MAX_TAGS, nameFromFile, occupiedBytes, PROPOSED_FIELDS, tagList, type ContentDoc } from "./media/content";
import { ImageRejected, probeImage } from "./media/image";
import { receiveUpload, watchUpload, type UploadSettings } from "./media/receive";
import { probeVideo } from "./media/video";

const DEFAULT_DURATION_MS = 10_000;
const PRESIGN_SECONDS = 300;

type Meta = RequestMeta;

const COLLECTIONS = {
	content: tenantCollection<ContentDoc>({ indexes: ["name", "type"] }),
	media_usage: USAGE_COLLECTION
};

/** `rest` for the gateway; the upload settings only tests change. */
type MediaSettings = ServiceSettingSchema & UploadSettings;

interface MediaVars extends DbVars<typeof COLLECTIONS> {
	config: Config;
	/** Set in started(), released in stopped(). */
	storage: Storage;
	/** Presigns download URLs for clients; null = the gateway streams the bytes. */
	publicStorage: Storage | null;
	/** Stored bytes per tenant (objects and thumbnails), grown atomically against the plan's limit. */
	storageQuota: UsageCounter;
	uploadBytes: OpsCounter<"type">;
}

interface MediaMethods {
	/** What the tenant's content really occupies (the usage counter's first value and recounts). */
	storedBytes(tenantId: string): Promise<number>;
	/** A download's answer: 302 to a presigned URL (setting the meta), or the bytes. */
	serveObject(ctx: Context<unknown, Meta>, key: string, mimeType: string, size: number | null): Promise<ContentFile>;
	removeObjects(doc: ContentDoc): Promise<void>;
	approvalRequested(ctx: Context<unknown, Meta>, doc: ContentDoc): Promise<void>;
	decide(ctx: Context<ApprovalDecisionParams, Meta>, decision: "approved" | "rejected"): Promise<ContentView>;
}

const VALIDITY_RULE = { ...ISO_INSTANT_RULE, optional: true, nullable: true } as const;
const DURATION_RULE = { type: "number", integer: true, min: 1000, max: 24 * 3600_000, convert: true, optional: true } as const;

const MediaService: ServiceSchema<MediaSettings, MediaMethods, MediaVars> = {
	name: "media",
	settings: { rest: "/" },
	mixins: [DbMixin(COLLECTIONS)],

	actions: {
		upload: {
			// One file per request; form fields before the file (or in the query string).
			rest: multipartRest("/content", { files: 1, fields: 10, fieldSize: 4096, parts: 12 }),
			// The request stream can be read once: a retry would start over mid-file (and answer a
			// misleading 415). And an upload takes as long as the link needs (a 2 GiB video on a slow
			// one): no total timeout, receiveUpload abandons it when it stops moving instead.
			retryPolicy: { enabled: false },
			timeout: 0,
			permission: "content.write",
			summary: "Upload an image or video (multipart `file`; optional `name`, `tags` comma separated, `durationMs`)",
			successStatus: 201,
			response: ContentView,
			// 402: the plan's storage is full.
			extraResponses: { 402: {}, 415: { description: "Not an allowed image or video, decided from the bytes (UNSUPPORTED_MEDIA_TYPE)." } },
			params: {
				$$strict: "remove",
				name: { ...NAME_RULE, optional: true },
				tags: { type: "string", max: 4000, optional: true },
				durationMs: DURATION_RULE,
				$filename: { type: "string", optional: true },
				$mimetype: { type: "string", optional: true }
			},
			async handler(ctx: ActionCtx<"media.upload", Meta>): Promise<Result<"media.upload">> {
				const source = ctx.stream as Readable | null;
				if (!source) throw Errors.validation([{ field: "file", message: "is required (multipart field `file`)", type: "required" }]);
				// Before anything is awaited: a body that fails meanwhile is not taken for a whole one.
				const upload = watchUpload(source);
				const { uploadDir, uploadIdleMs } = this.settings;
				const tenantId = tenantOf(ctx);
				const tags = tagList(ctx.params.tags);
				const limit = await planLimit(ctx, tenantId, "storageBytes", this.config.defaultPlan);
				const held = needsApproval(await approvalRequired(ctx, tenantId), ctx.meta.auth);
				const usage = await this.storageQuota.usage(tenantId);
				/** Bytes reserved against the plan once the file is known; given back unless it is stored. */
				let reserved = 0;
				let stored = false;

				const file = path.join(uploadDir ?? os.tmpdir(), `marquee-upload-${newId()}`);
				try {
					const received = await receiveUpload(upload, file, {
						maxImageBytes: this.config.media.maxImageBytes,
						maxVideoBytes: this.config.media.maxVideoBytes,
						// Only an early stop: the reservation below is what holds under parallel uploads.
						quotaBytes: limit - usage,
						quotaLimit: limit
					}, { idleMs: uploadIdleMs });
					const { sniffed } = received;
					let width: number | null = null;
					let height: number | null = null;
					let durationMs = ctx.params.durationMs ?? DEFAULT_DURATION_MS;
					let thumbnail: Buffer | null = null;
					let metadataSource: MetadataSource = "file";
					if (sniffed.type === "image") {
						try {
							({ width, height, thumbnail } = await probeImage(file));
						} catch (err) {
							if (err instanceof ImageRejected) {
								const message = err.reason === "too-many-pixels" ? "has more pixels than allowed" : "is not a readable image";
								throw Errors.validation([{ field: "file", message, type: err.reason }]);
							}
							throw err;
						}
					} else {
						const video = await probeVideo(file, ctx.params.durationMs);
						({ width, height, durationMs } = video);
						metadataSource = video.source;
					}

					// The thumbnail counts against the plan too: reserve the whole before anything is stored.
					const storedBytes = received.size + (thumbnail?.length ?? 0);
					await this.storageQuota.reserve(tenantId, storedBytes, limit);
					reserved = storedBytes;

					const doc = await this.db.content.insertDoc(ctx, {
						name: ctx.params.name ?? nameFromFile(ctx.params.$filename),
						type: sniffed.type,
						mimeType: sniffed.mimeType,
						size: received.size,
						sha256: received.sha256,
						width,
						height,
						durationMs,
						metadataSource,
						tags,
						validFrom: null,
						validUntil: null,
						status: "processing",
						...(held ? { approval: requested(false, actorOf(ctx.meta.auth), new Date()) } : {})
					});
					const objectKey = tenantKey(tenantId, "content", doc.id, `original.${sniffed.extension}`);
					const thumbnailKey = thumbnail ? tenantKey(tenantId, "content", doc.id, "thumbnail.webp") : null;
					// Closed whatever happens: a put that fails before reading to the end leaves it open.
					const body = fs.createReadStream(file);
					try {
						await this.storage.put(objectKey, body, received.size, sniffed.mimeType);
						if (thumbnail && thumbnailKey) await this.storage.put(thumbnailKey, thumbnail, thumbnail.length, "image/webp");
					} catch (err) {
						await this.db.content.removeDocs(ctx, { _id: doc.id });
						await this.storage.removePrefix(tenantKey(tenantId, "content", doc.id) + "/").catch(() => undefined);
						throw err;
					} finally {
						body.destroy();
					}
					const ready = await this.db.content.updateDoc(ctx, doc.id, { status: "ready", objectKey, thumbnailKey, thumbnailSize: thumbnail?.length ?? null });
					await audit(ctx, { action: "content.uploaded", target: doc.id, data: { type: sniffed.type, size: received.size, pendingApproval: held } });
					void broadcast(ctx, "media.content.created", { tenantId, contentId: doc.id });
					await publishEvent(ctx.broker, tenantId, "content.ready", { contentId: doc.id, name: ready.name, type: ready.type });
					if (held) await this.approvalRequested(ctx, ready);
					ctx.meta.$location = contentPath(doc.id);
					stored = true;
					this.uploadBytes.increment({ type: sniffed.type }, received.size);
					return contentView(ready);
				} finally {
					await fs.promises.rm(file, { force: true });
					if (reserved && !stored) await this.storageQuota.release(tenantId, reserved);
				}
			}
		},

		createUrl: {
			rest: "POST /content/url",
			permission: "content.write",
			summary: "Add a web page (http or https) as content",
			successStatus: 201,
			response: ContentView,
			params: {
				$$strict: "remove",
				name: NAME_RULE,
				url: { type: "string", max: 2048 },
				durationMs: { ...DURATION_RULE, optional: false },
				tags: { type: "array", items: { type: "string", max: 64 }, max: MAX_TAGS, optional: true }
			},
			async handler(ctx: ActionCtx<"media.createUrl", Meta>): Promise<Result<"media.createUrl">> {
				if (!isHttpUrl(ctx.params.url)) throw Errors.validation([{ field: "url", message: "must be an http or https URL without credentials", type: "url" }]);
				const held = needsApproval(await approvalRequired(ctx, tenantOf(ctx)), ctx.meta.auth);
				const doc = await this.db.content.insertDoc(ctx, {
					name: ctx.params.name,
					type: "web",
					mimeType: "text/html",
					url: ctx.params.url,
					size: 0,
					sha256: null,
					width: null,
					height: null,
					durationMs: ctx.params.durationMs,
					tags: tagList(ctx.params.tags),
					validFrom: null,
					validUntil: null,
					status: "ready",
					...(held ? { approval: requested(false, actorOf(ctx.meta.auth), new Date()) } : {})
				});
				await audit(ctx, { action: "content.created", target: doc.id, data: { type: "web", pendingApproval: held } });
				void broadcast(ctx, "media.content.created", { tenantId: tenantOf(ctx), contentId: doc.id });
				await publishEvent(ctx.broker, tenantOf(ctx), "content.ready", { contentId: doc.id, name: doc.name, type: doc.type });
				if (held) await this.approvalRequested(ctx, doc);
				ctx.meta.$location = contentPath(doc.id);
				return contentView(doc);
			}
		},

		list: {
			rest: "GET /content",
			permission: "tenant.read",
			summary: "Content, filtered by type, tag, free text or ?approval=pending|rejected",
			response: ContentPage,
			params: {
				$$strict: "remove",
				...PAGE_PARAMS,
				type: { type: "enum", values: ["image", "video", "web", "html"], optional: true },
				tag: { type: "string", max: 64, optional: true },
				q: { type: "string", max: 100, optional: true },
				approval: { type: "enum", values: ["pending", "rejected"], optional: true }
			},
			async handler(ctx: ActionCtx<"media.list", Meta>): Promise<Result<"media.list">> {
				const query: Query = {};
				if (ctx.params.approval) query["approval.status"] = ctx.params.approval;
				if (ctx.params.type) query.type = ctx.params.type;
				if (ctx.params.tag) query.tags = ctx.params.tag;
				if (ctx.params.q) Object.assign(query, textSearch(ctx.params.q, ["name", "tags"]));
				const page = await this.db.content.pageDocs(ctx, query, ctx.params.page, ctx.params.pageSize);
				return { ...page, rows: page.rows.map(contentView) };
			}
		},

		usage: {
			rest: "GET /content/usage",
			permission: "tenant.read",
			summary: "Storage used by the tenant's content and the plan's limit",
			response: ContentUsage,
			async handler(ctx: ActionCtx<"media.usage", Meta>): Promise<Result<"media.usage">> {
				const tenantId = tenantOf(ctx);
				const [storageBytes, limitBytes] = await Promise.all([this.storageQuota.usage(tenantId), planLimit(ctx, tenantId, "storageBytes", this.config.defaultPlan)]);
				return { storageBytes, limitBytes };
			}
		},

		get: {
			rest: "GET /content/:id",
			permission: "tenant.read",
			summary: "One content item",
			response: ContentView,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"media.get", Meta>): Promise<Result<"media.get">> {
				return contentView(await this.db.content.getDoc(ctx, ctx.params.id, "Content"));
			}
		},

		update: {
			rest: "PATCH /content/:id",
			permission: "content.write",
			summary: "Rename, retag, set the duration or the validity window",
			response: ContentView,
			params: {
				$$strict: "remove",
				id: ID_RULE,
				name: { ...NAME_RULE, optional: true },
				tags: { type: "array", items: { type: "string", max: 64 }, max: MAX_TAGS, optional: true },
				durationMs: DURATION_RULE,
				validFrom: VALIDITY_RULE,
				validUntil: VALIDITY_RULE
			},
			async handler(ctx: ActionCtx<"media.update", Meta>): Promise<Result<"media.update">> {
				const { id, ...edit } = ctx.params;
				const current = await this.db.content.getDoc(ctx, id, "Content");
				let set = contentChanges(current, edit);
				// Under approval, an editor's change of how it plays waits; what plays stays (or, never approved, nothing plays).
				const held = PROPOSED_FIELDS.some(f => set[f] !== undefined) && needsApproval(await approvalRequired(ctx, tenantOf(ctx)), ctx.meta.auth);
				if (held) {
					const approval = requested(isLive(current), actorOf(ctx.meta.auth), new Date());
					if (isLive(current)) {
						const { direct, proposal } = heldBack(set, current);
						set = { ...direct, proposal, approval };
					} else set = { ...set, approval };
				}
				const fields = Object.keys(set);
				const updated = await this.db.content.updateDoc(ctx, id, set, "Content");
				await audit(ctx, { action: "content.updated", target: id, data: { fields, pendingApproval: held } });
				void broadcast(ctx, "media.content.updated", { tenantId: tenantOf(ctx), contentId: id, fields });
				// Admins are told once per request: further edits of a pending change join it silently.
				if (held && approvalOf(current).status !== "pending") await this.approvalRequested(ctx, updated);
				return contentView(updated);
			}
		},

		remove: {
			rest: "DELETE /content/:id",
			permission: "content.write",
			summary: "Delete content and its objects; it leaves every playlist and manifest at once",
			successStatus: 204,
			response: null,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"media.remove", Meta>): Promise<Result<"media.remove">> {
				const doc = await this.db.content.removeDoc(ctx, ctx.params.id, "Content");
				const { tenantId } = doc;
				await this.storageQuota.release(tenantId, occupiedBytes(doc));
				// "At once": playlists drop the item and manifests are invalidated before the 204.
				if (ctx.broker.registry.getActionEndpoints("scheduling.removeContent")?.hasAvailable()) {
					// Playlists skip content that no longer exists, so a failure here only delays the cleanup.
					await call(ctx, "scheduling.removeContent", { tenantId, contentId: doc.id }).catch(err => this.logger.warn("Removing deleted content from playlists failed", err));
				}
				await this.removeObjects(doc);
				await audit(ctx, { action: "content.deleted", target: doc.id, data: { name: doc.name } });
				void broadcast(ctx, "media.content.deleted", { tenantId, contentId: doc.id });
				await publishEvent(ctx.broker, tenantId, "content.deleted", { contentId: doc.id, name: doc.name });
				return null;
			}
		},

		approve: {
			rest: "POST /content/:id/approve",
			permission: "content.approve",
			summary: "Approve the change waiting for review (a new item, or how it plays): from now on screens play it",
			response: ContentView,
			extraResponses: { 409: { description: "Nothing is waiting for approval, or the change was decided or replaced meanwhile (CONFLICT)." } },
			params: DECISION_PARAMS.approve,
			handler(ctx: ActionCtx<"media.approve", Meta>): Promise<Result<"media.approve">> {
				return this.decide(ctx, "approved");
			}
		},

		reject: {
			rest: "POST /content/:id/reject",
			permission: "content.approve",
			summary: "Reject the change waiting for review, with a comment: a new item never plays, a change is dropped and the approved version plays on",
			response: ContentView,
			extraResponses: { 409: { description: "Nothing is waiting for approval, or the change was decided or replaced meanwhile (CONFLICT)." } },
			params: DECISION_PARAMS.reject,
			handler(ctx: ActionCtx<"media.reject", Meta>): Promise<Result<"media.reject">> {
				return this.decide(ctx, "rejected");
			}
		},

		// The three downloads answer 200 with the bytes by default; with S3_PUBLIC_ENDPOINT set,
		// serveObject answers 302 to a presigned URL instead (a conditional $statusCode).
		download: {
			rest: "GET /content/:id/download",
			permission: "tenant.read",
			summary: "The file: 302 to a short-lived URL, or the bytes",
			response: ContentBytes,
			extraResponses: FILE_ANSWERS,
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"media.download", Meta>): Promise<Result<"media.download">> {
				const doc = await this.db.content.getDoc(ctx, ctx.params.id, "Content");
				if (!doc.objectKey) throw Errors.notFound("File of content", doc.id);
				return this.serveObject(ctx, doc.objectKey, doc.mimeType, doc.size);
			}
		},

		thumbnail: {
			rest: "GET /content/:id/thumbnail",
			permission: "tenant.read",
			summary: "The 320 px WebP thumbnail of an image: 302 to a short-lived URL, or the bytes",
			response: ContentBytes,
			extraResponses: { ...FILE_ANSWERS, 200: { description: "The WebP thumbnail's bytes (embedded storage).", content: { "image/webp": {} } } },
			params: { $$strict: "remove", id: ID_RULE },
			async handler(ctx: ActionCtx<"media.thumbnail", Meta>): Promise<Result<"media.thumbnail">> {
				const doc = await this.db.content.getDoc(ctx, ctx.params.id, "Content");
				if (!doc.thumbnailKey) throw Errors.notFound("Thumbnail of content", doc.id);
				return this.serveObject(ctx, doc.thumbnailKey, "image/webp", doc.thumbnailSize ?? null);
			}
		},

		deviceDownload: {
			rest: "GET /device/content/:contentId",
			permission: "device",
			summary: "A display downloads content of its current manifest (404 for anything else)",
			response: ContentBytes,
			extraResponses: FILE_ANSWERS,
			params: { $$strict: "remove", contentId: ID_RULE },
			async handler(ctx: ActionCtx<"media.deviceDownload", Meta>): Promise<Result<"media.deviceDownload">> {
				const { contentId } = ctx.params;
				// The permission admits device principals only, and every one names its display.
				const displayId = ctx.meta.auth?.displayId;
				const inManifest =
					displayId !== undefined && ctx.broker.registry.getActionEndpoints("scheduling.contentInManifest")?.hasAvailable()
						? await call(ctx, "scheduling.contentInManifest", { displayId, contentId })
						: false;
				if (!inManifest) throw Errors.notFound("Content", contentId);
				const doc = await this.db.content.getDoc(ctx, contentId, "Content");
				if (!doc.objectKey) throw Errors.notFound("Content", doc.id);
				return this.serveObject(ctx, doc.objectKey, doc.mimeType, doc.size);
			}
		},

		// ---- for other services ------------------------------------------------------------

		/** A tenant's content by ids, as playlists and manifests need it (unknown ids are left out). */
		byIds: {
			visibility: "public",
			params: { tenantId: "string", ids: { type: "array", items: "string", max: 1000 } },
			async handler(ctx: ActionCtx<"media.byIds">): Promise<Result<"media.byIds">> {
				if (ctx.params.ids.length === 0) return [];
				const docs = await this.db.content.findDocs(systemScope(ctx.params.tenantId), { _id: { $in: ctx.params.ids } });
				return docs.map(contentView);
			}
		},

		/** The tenant's storageBytes as its usage counter holds them (billing's usage view): no scan. */
		quotaUsage: {
			visibility: "public",
			params: { tenantId: "string" },
			handler(ctx: ActionCtx<"media.quotaUsage">): Promise<Result<"media.quotaUsage">> {
				return this.storageQuota.usage(ctx.params.tenantId);
			}
		},

		exportTenantData: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(ctx: ActionCtx<"media.exportTenantData">): Promise<Result<"media.exportTenantData">> {
				const docs = await this.db.content.findDocs(systemScope(ctx.params.tenantId));
				return { content: docs.map(contentView) };
			}
		}
	},

	channels: {
		[TENANT_DELETED_CHANNEL]: {
			group: "media",
			async handler(ctx: ChannelCtx<typeof TENANT_DELETED_CHANNEL>) {
				const { tenantId } = ctx.params;
				const objects = await this.storage.removePrefix(tenantKey(tenantId) + "/");
				const docs = await this.db.content.removeDocs(systemScope(tenantId), {});
				await this.db.media_usage.removeDocs(systemScope(tenantId), {});
				this.logger.info(`Tenant ${tenantId} deleted: ${docs} content items and ${objects} objects removed`);
			}
		}
	},

	methods: {
		async approvalRequested(ctx: Context<unknown, Meta>, doc: ContentDoc) {
			await publishEvent(ctx.broker, doc.tenantId, "approval.requested", { kind: "content", id: doc.id, name: doc.name, requestedBy: doc.approval?.requestedBy ?? null });
		},

		/** An admin's decision on the pending change, claimed by compare-and-set on the request it decides. */
		async decide(ctx: Context<ApprovalDecisionParams, Meta>, decision: "approved" | "rejected") {
			const current = await this.db.content.getDoc(ctx, ctx.params.id, "Content");
			const approval = decided(approvalOf(current), decision, { reviewer: actorOf(ctx.meta.auth), comment: ctx.params.comment ?? null, reviewed: ctx.params.requestedAt }, new Date());
			const proposed = Object.keys(current.proposal ?? {});
			const set: Changes<ContentDoc> = decision === "approved" ? { ...current.proposal, proposal: null, approval } : { proposal: null, approval };
			const claim = { _id: current.id, "approval.status": "pending", "approval.requestedAt": current.approval?.requestedAt ?? null };
			if (!(await this.db.content.updateWhere(ctx, claim, set))) throw Errors.conflict("The change was decided or replaced meanwhile; read it again");
			const updated = await this.db.content.getDoc(ctx, current.id, "Content");
			await audit(ctx, { action: `content.${decision}`, target: current.id, data: { comment: approval.comment, requestedBy: approval.requestedBy, fields: proposed } });
			void broadcast(ctx, "media.content.updated", { tenantId: current.tenantId, contentId: current.id, fields: ["approval", ...proposed] });
			await publishEvent(ctx.broker, current.tenantId, "approval.decided", {
				kind: "content",
				id: current.id,
				name: updated.name,
				status: decision,
				comment: approval.comment,
				requestedBy: approval.requestedBy,
				reviewedBy: approval.reviewedBy
			});
			return contentView(updated);
		},

		async storedBytes(tenantId: string): Promise<number> {
			const docs = await this.db.content.findDocs(systemScope(tenantId));
			return docs.reduce((sum, d) => sum + occupiedBytes(d), 0);
		},

		async serveObject(ctx: Context<unknown, Meta>, key: string, mimeType: string, size: number | null): Promise<ContentFile> {
			if (this.publicStorage) {
				ctx.meta.$statusCode = 302;
				ctx.meta.$location = await this.publicStorage.presignedGetUrl(key, PRESIGN_SECONDS);
				ctx.meta.$responseHeaders = { "Cache-Control": "no-store" };
				return null;
			}
			const stat = await this.storage.stat(key);
			if (!stat) throw Errors.notFound("Object");
			ctx.meta.$responseType = mimeType;
			ctx.meta.$responseHeaders = {
				"Content-Length": String(size ?? stat.size),
				"Cache-Control": "private, max-age=300",
				"X-Content-Type-Options": "nosniff"
			};
			return this.storage.get(key);
		},

		async removeObjects(doc: ContentDoc): Promise<void> {
			await this.storage.removePrefix(tenantKey(doc.tenantId, "content", doc.id) + "/");
		}
	},

	created() {
		this.config = getConfig();
		this.storageQuota = new UsageCounter(this.db.media_usage, {
			resource: "storageBytes",
			measure: tenantId => this.storedBytes(tenantId),
			onWarning: publishQuotaWarning(this.broker, this.logger)
		});
		this.uploadBytes = opsCounter(this.broker.metrics, OPS_METRICS.uploadBytes);
		const { publicEndpoint } = this.config.s3;
		this.publicStorage = publicEndpoint ? Storage.fromEndpoint({ ...this.config.s3, endpoint: publicEndpoint }) : null;
	},

	async started() {
		this.storage = await acquireStorage(this.config);
	},

	async stopped() {
		await releaseStorage(this.config);
	}
};

export default MediaService;
