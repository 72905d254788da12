/**
 * Media: content items and their objects. Uploads arrive as a multipart stream through the
 * gateway, are received into a temporary file (type sniffed from the bytes, SHA-256 and size
 * computed on the way, limits enforced mid-stream), probed (image dimensions and thumbnail,
 * video duration), and only then stored under `tenants/<tenantId>/content/<id>/`. Web pages
 * are content too. Downloads answer 302 to a short-lived presigned URL when S3_PUBLIC_ENDPOINT
 * is set, and stream the bytes otherwise.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DbMixin, textSearch, type DbMethods, type PublicDoc, type Query } from "../mixins/db.mixin";
import { audit } from "../shared/audit";
import { getConfig, type Config } from "../shared/config";
import { Errors } from "../shared/errors";
import { ID_RULE, newId } from "../shared/ids";
import { planLimit, USAGE_COLLECTION, UsageCounter } from "../shared/quota";
import type { Principal } from "../shared/rbac";
import { ISO_INSTANT_RULE, multipartRest, NAME_RULE, PAGE_PARAMS, type RequestMeta } from "../shared/request";
import { acquireStorage, releaseStorage, Storage, tenantKey } from "../shared/storage";
import { ImageRejected, probeImage } from "./media/image";
import { receiveUpload, watchUpload, type UploadSettings } from "./media/receive";
import { probeVideo } from "./media/video";
import type { TenantDeleted } from "./tenants.service";

const DEFAULT_DURATION_MS = 10_000;
const PRESIGN_SECONDS = 300;
const MAX_TAGS = 50;

type Collections = "content" | "media_usage";
type Meta = RequestMeta;

interface UploadParams {
	name?: string;
	tags?: string;
	durationMs?: number;
	$filename?: string;
	$mimetype?: string;
}

type MediaThis = DbMethods<Collections> & {
	config: Config;
	storage: Storage;
	/** Presigns download URLs for clients; null = the gateway streams the bytes. */
	publicStorage: Storage | null;
	broker: Context["broker"];
	logger: { info(...args: unknown[]): void; warn(...args: unknown[]): void };
	contentView(doc: PublicDoc): Record<string, unknown>;
	/** Stored bytes per tenant (objects and thumbnails), grown atomically against the plan's limit. */
	storageQuota: UsageCounter;
	storedBytes(tenantId: string): Promise<number>;
	serveObject(ctx: Context<unknown, Meta>, key: string, mimeType: string, size: number | null): Promise<Readable | null>;
	removeObjects(doc: PublicDoc): Promise<void>;
};

function tagList(raw: string | string[] | undefined): string[] {
	const list = Array.isArray(raw) ? raw : (raw ?? "").split(",");
	const tags = [...new Set(list.map(t => t.trim()).filter(Boolean))];
	if (tags.length > MAX_TAGS || tags.some(t => t.length > 64)) {
		throw Errors.validation([{ field: "tags", message: `at most ${MAX_TAGS} tags of up to 64 characters`, type: "tags" }]);
	}
	return tags;
}

/** A display name from a client's file name: no path, no control characters. */
function nameFromFile(filename: string | undefined): string {
	const base = [...path.basename(String(filename ?? ""))].filter(ch => ch.charCodeAt(0) >= 0x20 && ch.charCodeAt(0) !== 0x7f).join("").trim();
	return (base || "Untitled").slice(0, 200);
}

function isHttpUrl(value: string): boolean {
	try {
		const url = new URL(value);
		return (url.protocol === "http:" || url.protocol === "https:") && Boolean(url.hostname) && !url.username && !url.password;
	} catch {
		return false;
	}
}

const VALIDITY_RULE = { ...ISO_INSTANT_RULE, optional: true, nullable: true } as const;
const DURATION_RULE = { type: "number", integer: true, min: 1000, max: 24 * 3600_000, convert: true, optional: true } as const;

const MediaService: ServiceSchema<ServiceSettingSchema, MediaThis> = {
	name: "media",
	settings: { rest: "/" },
	mixins: [DbMixin({ content: { indexes: ["name", "type"] }, media_usage: USAGE_COLLECTION })],

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
			params: {
				$$strict: "remove",
				name: { ...NAME_RULE, optional: true },
				tags: { type: "string", max: 4000, optional: true },
				durationMs: DURATION_RULE,
				$filename: { type: "string", optional: true },
				$mimetype: { type: "string", optional: true }
			},
			async handler(this: MediaThis, ctx: Context<UploadParams, Meta>) {
				const source = ctx.stream as Readable | null;
				if (!source) throw Errors.validation([{ field: "file", message: "is required (multipart field `file`)", type: "required" }]);
				// Before anything is awaited: a body that fails meanwhile is not taken for a whole one.
				const upload = watchUpload(source);
				const { uploadDir, uploadIdleMs } = (this as MediaThis & { settings: UploadSettings }).settings;
				const tenantId = this.db.content.tenantOf(ctx);
				const tags = tagList(ctx.params.tags);
				const limit = await planLimit(ctx, tenantId, "storageBytes", this.config.defaultPlan);
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
					let metadataSource: "file" | "ffprobe" | "client" = "file";
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
						status: "processing"
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
					await audit(ctx, { action: "content.uploaded", target: doc.id, data: { type: sniffed.type, size: received.size } });
					ctx.broadcast("media.content.created", { tenantId, contentId: doc.id });
					ctx.meta.$statusCode = 201;
					ctx.meta.$location = `/api/v1/content/${doc.id}`;
					stored = true;
					return this.contentView(ready);
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
			params: {
				$$strict: "remove",
				name: NAME_RULE,
				url: { type: "string", max: 2048 },
				durationMs: { ...DURATION_RULE, optional: false },
				tags: { type: "array", items: { type: "string", max: 64 }, max: MAX_TAGS, optional: true }
			},
			async handler(this: MediaThis, ctx: Context<{ name: string; url: string; durationMs: number; tags?: string[] }, Meta>) {
				if (!isHttpUrl(ctx.params.url)) throw Errors.validation([{ field: "url", message: "must be an http or https URL without credentials", type: "url" }]);
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
					status: "ready"
				});
				await audit(ctx, { action: "content.created", target: doc.id, data: { type: "web" } });
				ctx.broadcast("media.content.created", { tenantId: this.db.content.tenantOf(ctx), contentId: doc.id });
				ctx.meta.$statusCode = 201;
				ctx.meta.$location = `/api/v1/content/${doc.id}`;
				return this.contentView(doc);
			}
		},

		list: {
			rest: "GET /content",
			permission: "tenant.read",
			summary: "Content, filtered by type, tag or free text",
			params: {
				$$strict: "remove",
				...PAGE_PARAMS,
				type: { type: "enum", values: ["image", "video", "web", "html"], optional: true },
				tag: { type: "string", max: 64, optional: true },
				q: { type: "string", max: 100, optional: true }
			},
			async handler(this: MediaThis, ctx: Context<{ page: number; pageSize: number; type?: string; tag?: string; q?: string }, Meta>) {
				const query: Query = {};
				if (ctx.params.type) query.type = ctx.params.type;
				if (ctx.params.tag) query.tags = ctx.params.tag;
				if (ctx.params.q) Object.assign(query, textSearch(ctx.params.q, ["name", "tags"]));
				const page = await this.db.content.pageDocs(ctx, query, ctx.params.page, ctx.params.pageSize);
				return { ...page, rows: page.rows.map(d => this.contentView(d)) };
			}
		},

		usage: {
			rest: "GET /content/usage",
			permission: "tenant.read",
			summary: "Storage used by the tenant's content and the plan's limit",
			async handler(this: MediaThis, ctx: Context<unknown, Meta>) {
				const tenantId = this.db.content.tenantOf(ctx);
				const [storageBytes, limitBytes] = await Promise.all([this.storageQuota.usage(tenantId), planLimit(ctx, tenantId, "storageBytes", this.config.defaultPlan)]);
				return { storageBytes, limitBytes };
			}
		},

		get: {
			rest: "GET /content/:id",
			permission: "tenant.read",
			summary: "One content item",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: MediaThis, ctx: Context<{ id: string }, Meta>) {
				return this.contentView(await this.db.content.getDoc(ctx, ctx.params.id, "Content"));
			}
		},

		update: {
			rest: "PATCH /content/:id",
			permission: "content.write",
			summary: "Rename, retag, set the duration or the validity window",
			params: {
				$$strict: "remove",
				id: ID_RULE,
				name: { ...NAME_RULE, optional: true },
				tags: { type: "array", items: { type: "string", max: 64 }, max: MAX_TAGS, optional: true },
				durationMs: DURATION_RULE,
				validFrom: VALIDITY_RULE,
				validUntil: VALIDITY_RULE
			},
			async handler(this: MediaThis, ctx: Context<{ id: string; name?: string; tags?: string[]; durationMs?: number; validFrom?: string | null; validUntil?: string | null }, Meta>) {
				const current = await this.db.content.getDoc(ctx, ctx.params.id, "Content");
				const { id, ...changes } = ctx.params;
				const set: Record<string, unknown> = {};
				if (changes.name !== undefined) set.name = changes.name;
				if (changes.tags !== undefined) set.tags = tagList(changes.tags);
				if (changes.durationMs !== undefined) set.durationMs = changes.durationMs;
				for (const field of ["validFrom", "validUntil"] as const) {
					const value = changes[field];
					if (value === undefined) continue;
					const at = value === null ? null : new Date(value);
					if (at && Number.isNaN(at.getTime())) throw Errors.validation([{ field, message: "is not a real date and time", type: "date" }]);
					set[field] = at ? at.toISOString() : null;
				}
				const from = (set.validFrom !== undefined ? set.validFrom : current.validFrom) as string | null;
				const until = (set.validUntil !== undefined ? set.validUntil : current.validUntil) as string | null;
				if (from && until && from >= until) throw Errors.validation([{ field: "validUntil", message: "must be after validFrom", type: "range" }]);
				const updated = await this.db.content.updateDoc(ctx, id, set, "Content");
				await audit(ctx, { action: "content.updated", target: id, data: { fields: Object.keys(set) } });
				ctx.broadcast("media.content.updated", { tenantId: this.db.content.tenantOf(ctx), contentId: id, fields: Object.keys(set) });
				return this.contentView(updated);
			}
		},

		remove: {
			rest: "DELETE /content/:id",
			permission: "content.write",
			summary: "Delete content and its objects; it leaves every playlist and manifest at once",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: MediaThis, ctx: Context<{ id: string }, Meta>) {
				const doc = await this.db.content.removeDoc(ctx, ctx.params.id, "Content");
				const tenantId = String(doc.tenantId);
				await this.storageQuota.release(tenantId, (Number(doc.size) || 0) + (Number(doc.thumbnailSize) || 0));
				// "At once": playlists drop the item and manifests are invalidated before the 204.
				if (ctx.broker.registry.getActionEndpoints("scheduling.removeContent")?.hasAvailable()) {
					// Playlists skip content that no longer exists, so a failure here only delays the cleanup.
					await ctx.call("scheduling.removeContent", { tenantId, contentId: doc.id }).catch(err => this.logger.warn("Removing deleted content from playlists failed", err));
				}
				await this.removeObjects(doc);
				await audit(ctx, { action: "content.deleted", target: doc.id, data: { name: doc.name } });
				ctx.broadcast("media.content.deleted", { tenantId, contentId: doc.id });
				ctx.meta.$statusCode = 204;
				return null;
			}
		},

		download: {
			rest: "GET /content/:id/download",
			permission: "tenant.read",
			summary: "The file: 302 to a short-lived URL, or the bytes",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: MediaThis, ctx: Context<{ id: string }, Meta>) {
				const doc = await this.db.content.getDoc(ctx, ctx.params.id, "Content");
				if (!doc.objectKey) throw Errors.notFound("File of content", doc.id);
				return this.serveObject(ctx, String(doc.objectKey), String(doc.mimeType), Number(doc.size));
			}
		},

		thumbnail: {
			rest: "GET /content/:id/thumbnail",
			permission: "tenant.read",
			summary: "The 320 px WebP thumbnail of an image: 302 to a short-lived URL, or the bytes",
			params: { $$strict: "remove", id: ID_RULE },
			async handler(this: MediaThis, ctx: Context<{ id: string }, Meta>) {
				const doc = await this.db.content.getDoc(ctx, ctx.params.id, "Content");
				if (!doc.thumbnailKey) throw Errors.notFound("Thumbnail of content", doc.id);
				return this.serveObject(ctx, String(doc.thumbnailKey), "image/webp", typeof doc.thumbnailSize === "number" ? doc.thumbnailSize : null);
			}
		},

		deviceDownload: {
			rest: "GET /device/content/:contentId",
			permission: "device",
			summary: "A display downloads content of its current manifest (404 for anything else)",
			params: { $$strict: "remove", contentId: ID_RULE },
			async handler(this: MediaThis, ctx: Context<{ contentId: string }, Meta>) {
				const auth = ctx.meta.auth as Principal;
				const inManifest = ctx.broker.registry.getActionEndpoints("scheduling.contentInManifest")?.hasAvailable()
					? await ctx.call("scheduling.contentInManifest", { displayId: auth.displayId, contentId: ctx.params.contentId })
					: false;
				if (!inManifest) throw Errors.notFound("Content", ctx.params.contentId);
				const doc = await this.db.content.getDoc(ctx, ctx.params.contentId, "Content");
				if (!doc.objectKey) throw Errors.notFound("Content", doc.id);
				return this.serveObject(ctx, String(doc.objectKey), String(doc.mimeType), Number(doc.size));
			}
		},

		// ---- for other services ------------------------------------------------------------

		/** A tenant's content by ids, as playlists and manifests need it (unknown ids are left out). */
		byIds: {
			visibility: "public",
			params: { tenantId: "string", ids: { type: "array", items: "string", max: 1000 } },
			async handler(this: MediaThis, ctx: Context<{ tenantId: string; ids: string[] }>) {
				if (ctx.params.ids.length === 0) return [];
				const docs = await this.db.content.findDocs({ tenantId: ctx.params.tenantId }, { _id: { $in: ctx.params.ids } });
				return docs.map(d => this.contentView(d));
			}
		},

		exportTenantData: {
			visibility: "public",
			params: { tenantId: "string" },
			async handler(this: MediaThis, ctx: Context<{ tenantId: string }>) {
				const docs = await this.db.content.findDocs({ tenantId: ctx.params.tenantId });
				return { content: docs.map(d => this.contentView(d)) };
			}
		}
	},

	channels: {
		"tenants.tenant.deleted": {
			group: "media",
			async handler(this: MediaThis, ctx: Context<unknown>) {
				const { tenantId } = ctx.params as TenantDeleted;
				const objects = await this.storage.removePrefix(tenantKey(tenantId) + "/");
				const docs = await this.db.content.removeTenantDocs(tenantId);
				await this.db.media_usage.removeTenantDocs(tenantId);
				this.logger.info(`Tenant ${tenantId} deleted: ${docs} content items and ${objects} objects removed`);
			}
		}
	},

	methods: {
		contentView(doc: PublicDoc) {
			const base = `/api/v1/content/${doc.id}`;
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
				url: doc.type === "web" ? doc.url : doc.objectKey ? `${base}/download` : null,
				thumbnailUrl: doc.thumbnailKey ? `${base}/thumbnail` : null,
				tags: doc.tags ?? [],
				validFrom: doc.validFrom ?? null,
				validUntil: doc.validUntil ?? null,
				status: doc.status,
				createdAt: doc.createdAt,
				updatedAt: doc.updatedAt
			};
		},

		/** What the tenant's content really occupies (the usage counter's first value and recounts). */
		async storedBytes(this: MediaThis, tenantId: string): Promise<number> {
			const docs = await this.db.content.findDocs({ tenantId });
			return docs.reduce((sum, d) => sum + (Number(d.size) || 0) + (Number(d.thumbnailSize) || 0), 0);
		},

		async serveObject(this: MediaThis, ctx: Context<unknown, Meta>, key: string, mimeType: string, size: number | null) {
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

		async removeObjects(this: MediaThis, doc: PublicDoc) {
			await this.storage.removePrefix(tenantKey(String(doc.tenantId), "content", doc.id) + "/");
		}
	},

	created(this: MediaThis) {
		this.config = getConfig();
		this.storageQuota = new UsageCounter(this.db.media_usage, { resource: "storageBytes", measure: tenantId => this.storedBytes(tenantId) });
		const { publicEndpoint } = this.config.s3;
		this.publicStorage = publicEndpoint ? Storage.fromEndpoint({ ...this.config.s3, endpoint: publicEndpoint }) : null;
	},

	async started(this: MediaThis) {
		this.storage = await acquireStorage(this.config);
	},

	async stopped(this: MediaThis) {
		await releaseStorage(this.config);
	}
};

export default MediaService;
