// A node-postgres pool whose every new connection logs in with a fresh Microsoft Entra token.
//
// Connection settings come from PGHOST, PGPORT, PGUSER and PGDATABASE (node-postgres reads
// them), and PGSSLROOTCERT. The token comes from @azure/identity's DefaultAzureCredential: a
// managed identity on Azure, the Azure CLI's login (`az login`) on a workstation.
const fs = require("node:fs");
const { DefaultAzureCredential } = require("@azure/identity");
const { Pool } = require("pg");

const SCOPE = "https://ossrdbms-aad.database.windows.net/.default";
const credential = new DefaultAzureCredential();

const pool = new Pool({
  // node-postgres calls this for each new connection. getToken() returns its cached token
  // while it is valid, and a new one before it expires.
  password: async () => (await credential.getToken(SCOPE)).token,
  // Verify the server's certificate and name against this root certificate.
  ssl: { ca: fs.readFileSync(process.env.PGSSLROOTCERT) },
  max: 4,
});
// An idle connection the server ended (a restart, a failover): without a listener, the
// pool's "error" event would end the process.
pool.on("error", (error) => console.error("idle connection lost:", error.message));

const QUERY = "SELECT current_user AS name, pg_backend_pid() AS pid";

async function main(pauseSeconds) {
  const { rows } = await pool.query(QUERY);
  console.log("first", rows[0].name, rows[0].pid);
  // Tokens last an hour or more (a few seconds in the tests): the pool outlives them.
  await new Promise((resolve) => setTimeout(resolve, pauseSeconds * 1000));
  // Holding four connections at once makes the pool open new ones.
  const held = [];
  try {
    for (let i = 0; i < 4; i++) held.push(await pool.connect());
    for (const client of held) {
      const { rows } = await client.query(QUERY);
      console.log("later", rows[0].name, rows[0].pid);
    }
  } finally {
    held.forEach((client) => client.release());
  }
}

main(Number(process.argv[2] ?? 0))
  .catch((error) => {
    console.error(error.message);
    process.exitCode = 1;
  })
  .finally(() => pool.end());
