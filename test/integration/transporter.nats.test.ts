/**
 * The multi-node path over a real NATS: node A runs the gateway (and the auth stub), node B the
 * services it routes to. Routing, RBAC of B's actions, typed errors, validation errors and the
 * request id all cross the transporter; `broker.call` from A gets B's AppErrors as AppErrors.
 */
import type { Context, Service, ServiceSchema } from "moleculer";
import { Errors as MoleculerErrors } from "moleculer";
import { AppError, Errors } from "../../shared/errors";
import type { RequestMeta as GatewayMeta } from "../../shared/request";
import { request, startBroker, startGateway, type ErrorBody, type TestBroker, type TestGateway } from "../helpers/platform";
import { describeWith, natsServer, requireServer, uniquePrefix } from "../helpers/servers";
import { CALLERS, ProbeService, StubAuthService, tokenOf } from "../helpers/stub-services";

const V1 = "/api/v1";

/** Runs on node B beside ProbeService: tells who served a request and counts calls. */
function remoteService(calls: { conflict: number }): ServiceSchema {
	return {
		name: "remote",
		settings: { rest: "/" },
		actions: {
			whoami: {
				rest: "GET /remote/whoami",
				permission: "public",
				handler(this: Service, ctx: Context<unknown, Partial<GatewayMeta>>) {
					return { nodeID: this.broker.nodeID, requestID: ctx.requestID, metaRequestId: ctx.meta.requestId ?? null };
				}
			},
			conflict: {
				visibility: "published",
				handler() {
					calls.conflict++;
					throw Errors.conflict("Slug taken", { field: "slug" });
				}
			}
		}
	};
}

async function eventually(check: () => Promise<boolean>, ms = 10_000): Promise<void> {
	const deadline = Date.now() + ms;
	while (!(await check())) {
		if (Date.now() > deadline) throw new Error("condition not met in time");
		await new Promise(resolve => setTimeout(resolve, 100));
	}
}

describeWith("nats")("gateway and services on two nodes over NATS", () => {
	let a: TestGateway;
	let b: TestBroker;
	let nodeB: string;
	const calls = { conflict: 0 };
	const auth = (caller: string) => ({ headers: { Authorization: `Bearer ${tokenOf(caller)}` } });

	beforeAll(async () => {
		const nats = await requireServer(natsServer());
		const namespace = uniquePrefix("nats").replace(/:/g, "-");
		const env = { TRANSPORTER: nats.url, NAMESPACE: namespace };
		// Brokers of one process would otherwise share the default hostname-pid node id.
		nodeB = `${namespace}node-b`;
		b = await startBroker([ProbeService, remoteService(calls)], env, { nodeID: nodeB });
		a = await startGateway([StubAuthService], env, { nodeID: `${namespace}node-a` });
		await a.broker.waitForServices(["probe", "remote"], 10_000);
		// moleculer-web regenerates its aliases (debounced) once it has seen B's services
		await eventually(async () => (await request(`${a.url}${V1}/remote/whoami`)).status === 200);
	}, 30_000);
	afterAll(async () => {
		await a?.stop();
		await b?.stop();
	});

	it("A runs the gateway and B the services: nothing of B is local to A", () => {
		expect(a.broker.nodeID).not.toBe(b.broker.nodeID);
		expect(a.broker.getLocalService("probe")).toBeFalsy();
		expect(a.broker.getLocalService("api")).toBeTruthy();
		expect(b.broker.getLocalService("probe")).toBeTruthy();
		expect(a.config.transporter).toMatch(/^nats:\/\//);
	});

	it("a route of B is served through A, with the principal in ctx.meta", async () => {
		const res = await request<{ ok: boolean; auth: unknown }>(`${a.url}${V1}/probe/perm/tenant.read`, auth("viewer"));
		expect(res.status).toBe(200);
		expect(res.body).toEqual({ ok: true, auth: CALLERS.viewer });
		const who = await request<{ nodeID: string }>(`${a.url}${V1}/remote/whoami`);
		expect(who.body.nodeID).toBe(nodeB);
	});

	it("the permission declared on B's action is enforced on A", async () => {
		const denied = await request<ErrorBody>(`${a.url}${V1}/probe/perm/content.write`, auth("viewer"));
		expect(denied.status).toBe(403);
		expect(denied.body.error).toMatchObject({ type: "FORBIDDEN", code: 403 });
		expect(denied.text).not.toContain('"ok"');
		expect((await request(`${a.url}${V1}/probe/perm/content.write`, auth("editor"))).status).toBe(200);
		expect((await request(`${a.url}${V1}/probe/perm/tenant.owner`, auth("admin"))).status).toBe(403);
		expect((await request(`${a.url}${V1}/probe/perm/tenant.read`)).status).toBe(401);
		// an action of B that declares no permission stays closed
		expect((await request(`${a.url}${V1}/probe/unguarded`, auth("owner"))).status).toBe(403);
	});

	it("a typed AppError thrown on B answers 409 CONFLICT with its data and the request id", async () => {
		const res = await request<ErrorBody>(`${a.url}${V1}/probe/conflict`, { headers: { "X-Request-Id": "req-conflict-1" } });
		expect(res.status).toBe(409);
		expect(res.body.error).toEqual({ type: "CONFLICT", code: 409, message: "Already exists", data: { field: "name" }, requestId: "req-conflict-1" });
	});

	it("validation errors from B answer 422 with the fields", async () => {
		const res = await request<ErrorBody>(`${a.url}${V1}/probe/echo`, { method: "POST", json: { name: "", count: "many" } });
		expect(res.status).toBe(422);
		expect(res.body.error.type).toBe("VALIDATION_ERROR");
		expect((res.body.error.data as Array<{ field: string }>).map(f => f.field).sort()).toEqual(["count", "name"]);
		expect(res.text).not.toContain("many");
	});

	it("an unexpected failure on B answers 500 without its internals", async () => {
		const res = await request<ErrorBody>(`${a.url}${V1}/probe/fail`);
		expect(res.status).toBe(500);
		expect(res.body.error).toMatchObject({ type: "INTERNAL_ERROR", message: "Internal server error" });
		expect(res.text).not.toContain("secret internal detail");
	});

	it("the request id given by the client is the one B sees", async () => {
		const res = await request<{ nodeID: string; requestID: string; metaRequestId: string }>(`${a.url}${V1}/remote/whoami`, {
			headers: { "X-Request-Id": "client-req.42" }
		});
		expect(res.status).toBe(200);
		expect(res.headers.get("x-request-id")).toBe("client-req.42");
		expect(res.body).toEqual({ nodeID: nodeB, requestID: "client-req.42", metaRequestId: "client-req.42" });
	});

	it("broker.call from A rejects with an AppError thrown on B, not retried", async () => {
		const before = calls.conflict;
		const err: unknown = await a.broker.call("remote.conflict").then(
			() => null,
			(e: unknown) => e
		);
		expect(err).toBeInstanceOf(AppError);
		expect(err).toMatchObject({ name: "AppError", code: 409, type: "CONFLICT", message: "Slug taken", data: { field: "slug" } });
		expect(calls.conflict - before).toBe(1);

		const probe: unknown = await a.broker.call("probe.conflict").catch((e: unknown) => e);
		expect(probe).toBeInstanceOf(AppError);
		expect(probe).toMatchObject({ code: 409, type: "CONFLICT", data: { field: "name" } });
	});

	it("broker.call from A gets B's validation errors as ValidationErrors", async () => {
		const err: unknown = await a.broker.call("probe.echo", { name: 5 }).catch((e: unknown) => e);
		expect(err).toBeInstanceOf(MoleculerErrors.ValidationError);
		expect(err).not.toBeInstanceOf(AppError);
	});
});
