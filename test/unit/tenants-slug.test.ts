/** services/tenants/slug.ts: readable slugs for names in any script, and their suffixed variants. */
import { SLUG_MAX, slugify, withSuffix } from "../../services/tenants/slug";

describe("slugify", () => {
	it.each([
		["Acme", "acme"],
		["ACME", "acme"],
		["A.C.M.E", "a-c-m-e"],
		["  Acme  Signage!! ", "acme-signage"],
		["Café Zürich", "cafe-zurich"],
		["Łódź Straße", "lodz-strasse"],
		["Москва", "moskva"],
		["Ёлка Йошкар-Ола", "yolka-yoshkar-ola"],
		["Київ", "kiyiv"],
		["Αθήνα", "athina"],
		["東京サイネージ", "東京サイネージ"],
		["서울 광고", "서울-광고"],
		["مدينة", "مدينة"],
		["ﬁnance²", "finance2"]
	])("%s → %s", (name, slug) => {
		expect(slugify(name)).toBe(slug);
	});

	it.each(["!!!", "🎉🎉🎉", "   ", "---", "\u0000\u200b"])("a name with no letter or digit (%j) → org", name => {
		expect(slugify(name)).toBe("org");
	});

	it("is at most SLUG_MAX characters and never ends with a dash", () => {
		for (const name of ["x".repeat(500), `${"ab ".repeat(40)}`, "東".repeat(100)]) {
			const slug = slugify(name);
			expect([...slug].length).toBeLessThanOrEqual(SLUG_MAX);
			expect(slug).not.toMatch(/-$/);
		}
	});
});

describe("withSuffix", () => {
	it("adds six random lower-case letters or digits within SLUG_MAX", () => {
		const seen = new Set<string>();
		for (let i = 0; i < 200; i++) {
			const slug = withSuffix(slugify("x".repeat(100)));
			expect(slug).toMatch(/^x+-[a-z0-9]{6}$/);
			expect([...slug].length).toBeLessThanOrEqual(SLUG_MAX);
			seen.add(slug);
		}
		expect(seen.size).toBe(200);
		expect(withSuffix("東京")).toMatch(/^東京-[a-z0-9]{6}$/);
	});
});
