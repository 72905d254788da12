/**
 * The broker's parameter validator: fastest-validator with three rules it does not keep itself.
 *
 * 1. `null` is a value only where a rule says `nullable: true`. fastest-validator lets `null`
 *    through every `optional: true` field, so `PATCH /schedules/:id {"playlistId": null}` was
 *    stored; here optional means "may be absent", never "may be null".
 * 2. It never throws. fastest-validator converts values with `Number()`/`String()` (rules with
 *    `convert`, `equal`, dates), which throws on client objects such as `{"toString": 1}`; an
 *    object or array where a scalar belongs is refused before it gets there, and anything the
 *    checker still throws becomes a validation failure instead of a 500.
 *
 * 3. A rule marked `instant: true` (ISO_INSTANT_RULE) takes only dates and times that exist.
 *
 * Failures keep fastest-validator's shape (`{type, field, message}`), so `toApiError` turns them
 * into the 422's field list like any other.
 */
import { Errors as MoleculerErrors, Validators } from "moleculer";

interface Failure {
	type: string;
	field: string;
	message: string;
}

type Rule = Record<string, unknown> & { type?: unknown };
type Check = ((params: unknown, opts?: unknown) => true | Failure[] | Promise<true | Failure[]>) & { async?: boolean };

/** Rule types whose value is one scalar (a string, number, boolean or date), never an object. */
const SCALAR_TYPES = new Set(["string", "number", "boolean", "date", "email", "enum", "equal", "uuid", "url", "currency", "luhn", "mac", "objectID"]);

/** A rule in object form; the string shorthand ("string|optional") is read into one. */
function ruleOf(raw: unknown): Rule | null {
	if (typeof raw === "string") {
		const [type, ...flags] = raw.split("|").map(s => s.trim());
		const rule: Rule = { type };
		for (const flag of flags) {
			const [name, value] = flag.split(":");
			rule[name] = value === undefined ? true : value === "true" ? true : value === "false" ? false : value;
		}
		return rule;
	}
	if (raw && typeof raw === "object" && !Array.isArray(raw)) return raw as Rule;
	// An array of alternatives ("multi" rule): left to fastest-validator.
	return null;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
	return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The failures of rule 1 and of objects where scalars belong, in fastest-validator's shape. */
export function preCheck(schema: Record<string, unknown>, params: unknown): Failure[] {
	return compilePreCheck(schema)(params, "");
}

/** Checks a value at `field` (built only when it is needed: for a failure or a nested value). */
type ValueCheck = (value: unknown, prefix: string, name: string) => Failure[];

/** Shared by every check that finds nothing (frozen: no caller may add to it). */
const NO_FAILURES = Object.freeze([]) as unknown as Failure[];
const fieldOf = (prefix: string, name: string) => (prefix ? `${prefix}.${name}` : name);

/** `found` added to `failures` one by one (spread arguments overflow the stack past ~120 000: an array of nulls does it). */
function append(failures: Failure[] | null, found: readonly Failure[]): Failure[] {
	const all = failures ?? [];
	for (const failure of found) all.push(failure);
	return all;
}

/**
 * The pre-check of a schema, compiled once (as the broker compiles its rules once per action):
 * the rules read, then per request only the values walked — the heartbeat, every screen's every
 * 30 s, is checked twice (in its group, then alone) and should cost no parsing of rules.
 */
export function compilePreCheck(schema: Record<string, unknown>): (params: unknown, prefix: string) => Failure[] {
	const fields: Array<{ name: string; check: ValueCheck }> = [];
	for (const [name, raw] of Object.entries(schema)) {
		if (name.startsWith("$$")) continue;
		const rule = ruleOf(raw);
		if (rule) fields.push({ name, check: compileValue(rule) });
	}
	return (params, prefix) => {
		if (!isPlainObject(params)) return NO_FAILURES;
		let failures: Failure[] | null = null;
		for (const { name, check } of fields) {
			if (!Object.hasOwn(params, name)) continue;
			const found = check(params[name], prefix, name);
			if (found.length) failures = append(failures, found);
		}
		return failures ?? NO_FAILURES;
	};
}

function compileValue(rule: Rule): ValueCheck {
	const type = typeof rule.type === "string" ? rule.type : "";
	const nullable = rule.nullable === true || rule.type === "any";
	const scalar = SCALAR_TYPES.has(type);
	const instant = rule.instant === true;
	const props = type === "object" && isPlainObject(rule.props) ? compilePreCheck(rule.props) : null;
	const itemRule = type === "array" && rule.items !== undefined ? ruleOf(rule.items) : null;
	const items = itemRule ? compileValue(itemRule) : null;
	return (value, prefix, name) => {
		if (value === null) {
			if (nullable) return NO_FAILURES;
			const field = fieldOf(prefix, name);
			return [{ type: "required", field, message: `The '${field}' field must not be null.` }];
		}
		if (value === undefined) return NO_FAILURES;
		if (scalar && typeof value === "object" && !(value instanceof Date)) {
			const field = fieldOf(prefix, name);
			return [{ type, field, message: `The '${field}' field must be a ${type === "enum" || type === "equal" ? "single value" : type}.` }];
		}
		if (instant && typeof value === "string" && !isRealInstant(value)) {
			const field = fieldOf(prefix, name);
			return [{ type: "date", field, message: `The '${field}' field must be a date and time that exists (2026-02-30 and 24:00 do not).` }];
		}
		if (props && isPlainObject(value)) return props(value, fieldOf(prefix, name));
		if (items && Array.isArray(value)) {
			const field = fieldOf(prefix, name);
			let failures: Failure[] | null = null;
			for (let i = 0; i < value.length; i++) {
				const found = items(value[i], "", `${field}[${i}]`);
				if (found.length) failures = append(failures, found);
			}
			return failures ?? NO_FAILURES;
		}
		return NO_FAILURES;
	};
}

const INSTANT_PARTS = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/;

/**
 * Whether an ISO instant names a real moment: `Date` rolls 2026-02-30 over to 2 March and
 * 24:00 to the next day, so the parts must come back unchanged. (A rule marked `instant: true`,
 * such as ISO_INSTANT_RULE, is checked here; its pattern checks the shape.)
 */
export function isRealInstant(value: string): boolean {
	const m = INSTANT_PARTS.exec(value);
	if (!m) return true; // the shape is the pattern's to refuse
	const [y, mo, d, h, mi, s] = m.slice(1).map(part => Number(part ?? 0));
	const t = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
	return t.getUTCFullYear() === y && t.getUTCMonth() === mo - 1 && t.getUTCDate() === d && t.getUTCHours() === h && t.getUTCMinutes() === mi && t.getUTCSeconds() === s;
}

const UNREADABLE: Failure[] = [{ type: "invalid", field: "", message: "The request's parameters could not be read." }];

/** Wraps a compiled checker with the pre-check and makes it total. */
export function guardedCheck(schema: Record<string, unknown>, check: Check): Check {
	const pre = compilePreCheck(schema);
	const guarded: Check = (params, opts) => {
		try {
			const failures = pre(params, "");
			if (failures.length) return check.async ? Promise.resolve(failures) : failures;
			const result = check(params, opts);
			return result instanceof Promise ? result.catch(() => UNREADABLE) : result;
		} catch {
			return check.async ? Promise.resolve(UNREADABLE) : UNREADABLE;
		}
	};
	guarded.async = check.async;
	return guarded;
}

export class SafeValidator extends Validators.Fastest {
	constructor() {
		// fastest-validator's own enum message puts the allowed values where the sent one should be
		// ("field value 'pending, rejected' does not match"); the sent value is not echoed back at all.
		super({ messages: { enumValue: "The '{field}' field must be one of: {expected}." } });
	}

	override compile(schema: Record<string, unknown>) {
		return guardedCheck(schema, super.compile(schema) as unknown as Check) as unknown as ReturnType<Validators.Fastest["compile"]>;
	}

	override validate(params: Record<string, unknown>, schema: Record<string, unknown>): boolean {
		const result = this.compile(schema)(params) as unknown;
		if (result !== true) throw new MoleculerErrors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", result as Failure[]);
		return true;
	}
}
