// The mongo-init Job (mongo.yaml), run by `mongosh --nodb`. Idempotent:
//   1. waits for the members, and initiates the replica set rs0 unless it already is;
//   2. waits for a primary;
//   3. creates the user MONGO_URI names (or updates its password), with readWrite on MONGO_URI's
//      database, in MONGO_URI's authSource (default: that database).
// Env: MONGO_ROOT_USERNAME, MONGO_ROOT_PASSWORD (Secret marquee-dependencies), MONGO_URI (Secret
// marquee-secrets). The member list matches mongo.yaml's StatefulSet (3 replicas, Service mongo).
const MEMBERS = ["mongo-0.mongo:27017", "mongo-1.mongo:27017", "mongo-2.mongo:27017"];
const REPLICA_SET = "rs0";
const env = process.env;

function fail(message) {
	print(`mongo-init: ${message}`);
	quit(1);
}

function log(message) {
	print(`mongo-init: ${message}`);
}

for (const name of ["MONGO_ROOT_USERNAME", "MONGO_ROOT_PASSWORD", "MONGO_URI"]) {
	if (!env[name]) fail(`${name} is not set`);
}
if (env.MONGO_ROOT_PASSWORD.includes("REPLACE_ME") || env.MONGO_URI.includes("REPLACE_ME")) {
	fail("the Secrets still hold REPLACE_ME placeholders: fill them in first (k8s/base/secret.example.yaml)");
}

const uri = /^mongodb:\/\/([^:@/]+):([^@/]+)@[^/]+\/([^?]+)(?:\?(.*))?$/.exec(env.MONGO_URI);
if (!uri) fail("MONGO_URI must be mongodb://user:password@hosts/database[?options]");
const appUser = decodeURIComponent(uri[1]);
const appPassword = decodeURIComponent(uri[2]);
const appDatabase = decodeURIComponent(uri[3]);
const authSourceOption = (uri[4] || "").split("&").find(option => option.startsWith("authSource="));
const authSource = authSourceOption ? decodeURIComponent(authSourceOption.slice("authSource=".length)) : appDatabase;

const root = `${encodeURIComponent(env.MONGO_ROOT_USERNAME)}:${encodeURIComponent(env.MONGO_ROOT_PASSWORD)}`;

/** Runs `command`, answering MongoDB's error document instead of throwing. */
function run(db, command) {
	try {
		return db.runCommand(command);
	} catch (error) {
		return { ok: 0, codeName: error.codeName, errmsg: error.message };
	}
}

/** The admin database over `address` (options in the query string), once it answers a ping. */
function adminOf(address, what) {
	for (let attempt = 1; ; attempt++) {
		try {
			const admin = new Mongo(`mongodb://${root}@${address}`).getDB("admin");
			const pong = admin.runCommand({ ping: 1 });
			if (pong.ok) return admin;
			throw new Error(JSON.stringify(pong));
		} catch (error) {
			if (attempt >= 60) fail(`${what} did not answer: ${error.message}`);
			log(`waiting for ${what}: ${error.message}`);
			sleep(5000);
		}
	}
}

// 1. The replica set.
const first = adminOf(`${MEMBERS[0]}/admin?directConnection=true&authSource=admin`, MEMBERS[0]);
const status = run(first, { replSetGetStatus: 1 });
if (status.ok) {
	log(`replica set ${status.set} is initiated`);
} else if (status.codeName === "NotYetInitialized") {
	// replSetInitiate needs every member to answer.
	for (const member of MEMBERS.slice(1)) adminOf(`${member}/admin?directConnection=true&authSource=admin`, member);
	const config = { _id: REPLICA_SET, members: MEMBERS.map((host, i) => ({ _id: i, host, priority: i === 0 ? 2 : 1 })) };
	const initiated = run(first, { replSetInitiate: config });
	if (!initiated.ok) fail(`replSetInitiate: ${initiated.errmsg}`);
	log(`replica set ${REPLICA_SET} initiated with ${MEMBERS.join(", ")}`);
} else {
	fail(`replSetGetStatus: ${status.errmsg}`);
}

// 2. A primary, through the set.
const replicaSet = adminOf(`${MEMBERS.join(",")}/admin?replicaSet=${REPLICA_SET}&authSource=admin`, `a primary of ${REPLICA_SET}`);
for (let attempt = 1; !run(replicaSet, { hello: 1 }).isWritablePrimary; attempt++) {
	if (attempt >= 60) fail(`no primary in ${REPLICA_SET}`);
	sleep(2000);
}

// 3. The services' user.
if (appUser === env.MONGO_ROOT_USERNAME && authSource === "admin") {
	log("MONGO_URI uses the root user: no user to create (a user of its own is better)");
} else {
	const users = replicaSet.getSiblingDB(authSource);
	const roles = [{ role: "readWrite", db: appDatabase }];
	if (users.getUser(appUser)) {
		users.updateUser(appUser, { pwd: appPassword, roles });
		log(`user ${appUser}@${authSource} updated (readWrite on ${appDatabase})`);
	} else {
		users.createUser({ user: appUser, pwd: appPassword, roles });
		log(`user ${appUser}@${authSource} created (readWrite on ${appDatabase})`);
	}
}
