/**
 * Request-scoped logging. The gateway runs each HTTP request inside `requestScope.run()`, and
 * the `RequestScopeMiddleware` does the same around every local action and event handler, so
 * the logger formatter can stamp the request id on every line written while serving it,
 * whichever service writes it.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { Context, Middleware } from "moleculer";
import type { LogFormat } from "./config";

interface RequestScope {
	requestId: string;
}

export const requestScope = new AsyncLocalStorage<RequestScope>();

/** What a pure module needs of a service's logger (moleculer's `this.logger` is one). */
export interface LogSink {
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
	error(...args: unknown[]): void;
}

export function currentRequestId(): string | undefined {
	return requestScope.getStore()?.requestId;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A client's X-Request-Id is echoed only when it is short and harmless in a log line. */
export function acceptableRequestId(value: unknown): value is string {
	return typeof value === "string" && REQUEST_ID.test(value);
}

function withScope<T>(ctx: Context, run: () => T): T {
	const requestId = ctx.requestID;
	if (!requestId || requestScope.getStore()?.requestId === requestId) return run();
	return requestScope.run({ requestId }, run);
}

/** Puts the context's request id in scope around local actions and event handlers. */
export const RequestScopeMiddleware: Middleware = {
	name: "RequestScope",
	localAction(next: (ctx: Context) => unknown) {
		return (ctx: Context) => withScope(ctx, () => next(ctx));
	},
	localEvent(next: (ctx: Context) => void | Promise<void>) {
		return (ctx: Context) => withScope(ctx, () => next(ctx));
	}
};

type Bindings = { nodeID?: string; ns?: string; mod?: string; svc?: string };
type PrintArgs = (args: unknown[]) => unknown[];

function errorFields(args: unknown[]): Record<string, unknown> | undefined {
	const err = args.find((a): a is Error => a instanceof Error);
	if (!err) return undefined;
	return { name: err.name, message: err.message, stack: err.stack };
}

/** A Moleculer Console-logger formatter: JSON lines in production, readable lines otherwise. */
export function logFormatter(format: LogFormat) {
	return function (
		this: unknown,
		level: string,
		args: unknown[],
		bindings: Bindings,
		{ printArgs }: { printArgs: PrintArgs }
	): unknown[] {
		const requestId = currentRequestId();
		if (format === "json") {
			const printable = args.filter(a => !(a instanceof Error));
			const line: Record<string, unknown> = {
				ts: new Date().toISOString(),
				level,
				msg: printArgs(printable).join(" "),
				node: bindings.nodeID,
				mod: bindings.mod
			};
			if (requestId) line.requestId = requestId;
			const err = errorFields(args);
			if (err) line.err = err;
			return [JSON.stringify(line)];
		}
		const time = new Date().toISOString().substring(11, 23);
		const prefix = `${time} ${level.toUpperCase().padEnd(5)} ${(bindings.mod ?? "").toUpperCase()}${requestId ? ` [${requestId}]` : ""}:`;
		return [prefix, ...printArgs(args)];
	};
}
