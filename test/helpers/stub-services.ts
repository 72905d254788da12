/**
 * Small services that give the gateway something to route in its own tests. `auth.resolve` is
 * a stand-in keyed by fixed tokens until the auth service exists; it exercises the gateway's
 * authentication hook, not authentication itself.
 */
import { Readable } from "node:stream";
import type { Context, ServiceSchema } from "moleculer";
import { Errors } from "../../shared/errors";
import { multipartRest } from "../../shared/request";
import { PERMISSIONS, type Permission, type Principal, type Role } from "../../shared/rbac";

export const TENANT = "tenant-1";

export const CALLERS: Record<string, Principal | null> = {
	anonymous: null,
	owner: { kind: "user", tenantId: TENANT, userId: "u-owner", role: "owner" },
	admin: { kind: "user", tenantId: TENANT, userId: "u-admin", role: "admin" },
	editor: { kind: "user", tenantId: TENANT, userId: "u-editor", role: "editor" },
	viewer: { kind: "user", tenantId: TENANT, userId: "u-viewer", role: "viewer" },
	apiKeyAdmin: { kind: "apiKey", tenantId: TENANT, apiKeyId: "k-admin", role: "admin" },
	device: { kind: "device", tenantId: TENANT, displayId: "d-1" }
};

export function tokenOf(caller: string): string {
	return `test-token-${caller}`;
}

export const StubAuthService: ServiceSchema = {
	name: "auth",
	actions: {
		resolve: {
			visibility: "public",
			params: { token: "string" },
			handler(ctx: Context<{ token: string }>): Principal {
				const caller = ctx.params.token.replace(/^test-token-/, "");
				const principal = CALLERS[caller];
				if (!principal) throw Errors.unauthorized("Invalid token");
				return principal;
			}
		}
	}
};

/** How often each probe action with side effects ran (OPTIONS must never run one). */
export const probeCalls = { touch: 0, streamReads: 0, streamDestroyed: 0 };

/** One route per permission of the RBAC table, plus routes that exercise validation and timing. */
export const ProbeService: ServiceSchema = {
	name: "probe",
	// As every Marquee service: actions carry their full path under /api/v1.
	settings: { rest: "/" },
	actions: {
		...Object.fromEntries(
			(Object.keys(PERMISSIONS) as Permission[]).map(permission => [
				`perm_${permission.replace(".", "_")}`,
				{
					rest: `GET /probe/perm/${permission}`,
					permission,
					handler: (ctx: Context<unknown, { auth: Principal | null }>) => ({ ok: true, auth: ctx.meta.auth })
				}
			])
		),
		echo: {
			rest: "POST /probe/echo",
			permission: "public",
			params: {
				name: { type: "string", min: 1, max: 50 },
				count: { type: "number", integer: true, optional: true },
				converted: { type: "number", convert: true, optional: true },
				note: { type: "string", optional: true, nullable: true },
				nested: { type: "object", optional: true, props: { flag: { type: "boolean", optional: true } } }
			},
			handler: (ctx: Context<{ name: string; count?: number }>) => ctx.params
		},
		stray: {
			rest: "GET /probe/stray",
			permission: "public",
			handler() {
				// Failures no handler catches: a throw in a timer and a rejection nobody awaits.
				setImmediate(() => {
					throw new Error("stray exception from a timer");
				});
				void Promise.reject(new Error("stray rejection nobody awaits"));
				return { ok: true };
			}
		},
		touch: {
			rest: "DELETE /probe/touch",
			permission: "public",
			handler: () => ({ touched: ++probeCalls.touch })
		},
		stream: {
			rest: "GET /probe/stream",
			permission: "public",
			handler(ctx: Context<unknown, { $responseType?: string; $responseHeaders?: Record<string, string> }>) {
				let sent = 0;
				const body = new Readable({
					read() {
						probeCalls.streamReads += 1;
						this.push(sent++ < 64 ? Buffer.alloc(16_384, 1) : null);
					},
					destroy(err, done) {
						probeCalls.streamDestroyed += 1;
						done(err);
					}
				});
				ctx.meta.$responseType = "application/octet-stream";
				ctx.meta.$responseHeaders = { "Content-Length": String(64 * 16_384) };
				return body;
			}
		},
		upload: {
			rest: multipartRest("/probe/upload", { files: 1, fields: 5 }),
			permission: "public",
			async handler(ctx: Context<unknown>) {
				let bytes = 0;
				for await (const chunk of ctx.stream as unknown as AsyncIterable<Buffer>) bytes += chunk.length;
				return { bytes };
			}
		},
		fail: {
			rest: "GET /probe/fail",
			permission: "public",
			handler() {
				throw new Error("secret internal detail at /srv/app.js:12");
			}
		},
		conflict: {
			rest: "GET /probe/conflict",
			permission: "public",
			handler() {
				throw Errors.conflict("Already exists", { field: "name" });
			}
		},
		slow: {
			rest: "GET /probe/slow",
			permission: "public",
			params: { ms: { type: "number", integer: true, min: 0, max: 10_000, convert: true } },
			async handler(ctx: Context<{ ms: number }>) {
				await new Promise(resolve => setTimeout(resolve, ctx.params.ms));
				return { waited: ctx.params.ms };
			}
		},
		noPermission: {
			rest: "GET /probe/unguarded",
			handler: () => ({ leaked: true })
		}
	}
};

export type { Role };
