/** The device_credentials collection in memory, for auth's device-credential functions (unit tests). */
import type { Query, WideScope } from "../../mixins/db.mixin";
import type { DeviceCredentialDoc, DeviceCredentialStore } from "../../services/auth/device-credentials";

function tenantOfScope(scope: WideScope): string | null {
	if ("kind" in scope && scope.kind === "allTenants") return null;
	if ("kind" in scope && scope.kind === "system") return scope.tenantId;
	throw new Error("the stand-in takes system scopes only");
}

/** The device_credentials collection in memory. */
export function fakeCredentials(): DeviceCredentialStore & { docs: DeviceCredentialDoc[] } {
	const docs: DeviceCredentialDoc[] = [];
	const now = "2026-01-01T00:00:00.000Z";
	const find = (scope: WideScope, query: Query) => {
		const tenant = tenantOfScope(scope);
		return docs.find(d => (tenant === null || d.tenantId === tenant) && d.displayId === query.displayId);
	};
	return {
		docs,
		async findDoc(scope, query) {
			const found = find(scope, query);
			return found ? { ...found } : null;
		},
		async insertDoc(scope, fields) {
			// displayId is unique in the real collection.
			if (find(scope, { displayId: fields.displayId })) throw Object.assign(new Error("duplicate displayId"), { type: "CONFLICT" });
			const doc: DeviceCredentialDoc = { createdAt: now, updatedAt: now, ...fields, id: `c${docs.length + 1}`, tenantId: tenantOfScope(scope) ?? "" };
			docs.push(doc);
			return { ...doc };
		},
		async updateWhere(scope, query, changes) {
			const doc = docs.find(d => d.id === query._id && d.tenantId === tenantOfScope(scope) && (query.version === undefined || d.version === query.version));
			if (!doc) return 0;
			Object.assign(doc, changes);
			return 1;
		}
	};
}
