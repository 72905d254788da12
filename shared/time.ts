/** Time zones: every display and tenant names an IANA zone, checked the same way everywhere. */
import { Errors } from "./errors";

export function isTimezone(zone: string): boolean {
	try {
		new Intl.DateTimeFormat("en-US", { timeZone: zone });
		return true;
	} catch {
		return false;
	}
}

/** 422 naming `field` unless `zone` is an IANA time zone (undefined passes: nothing to check). */
export function assertTimezone(zone: string | undefined | null, field = "timezone"): void {
	if (zone !== undefined && zone !== null && !isTimezone(zone)) {
		throw Errors.validation([{ field, message: "is not an IANA time zone", type: "timezone" }]);
	}
}

/**
 * The zone's canonical IANA spelling ("europe/berlin" → "Europe/Berlin", "utc" → "UTC"), or null
 * when it is none. Intl accepts any case and old aliases; other tools (ClickHouse) want the
 * canonical name.
 */
export function canonicalTimezone(zone: string): string | null {
	try {
		return new Intl.DateTimeFormat("en-US", { timeZone: zone }).resolvedOptions().timeZone;
	} catch {
		return null;
	}
}
