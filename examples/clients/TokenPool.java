import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.postgresql.plugin.AuthenticationPlugin;
import org.postgresql.plugin.AuthenticationRequestType;
import org.postgresql.util.PSQLException;
import org.postgresql.util.PSQLState;

/**
 * A HikariCP pool over pgjdbc whose every new connection logs in with a fresh Microsoft Entra
 * token. Connection settings come from PGHOST, PGPORT, PGUSER, PGDATABASE and PGSSLROOTCERT.
 */
public class TokenPool {
    /**
     * pgjdbc (42.3 and later) asks this plugin for the password of each new connection. The
     * token comes from the Azure CLI (`az login`, or `az login --identity` for a managed
     * identity), which returns its cached token while it is valid and a new one before it
     * expires.
     */
    public static class EntraTokenPlugin implements AuthenticationPlugin {
        @Override
        public char[] getPassword(AuthenticationRequestType type) throws PSQLException {
            try {
                // On Windows the Azure CLI is az.cmd.
                Process az = new ProcessBuilder("az", "account", "get-access-token",
                        "--resource-type", "oss-rdbms", "--query", "accessToken", "--output", "tsv")
                        .redirectError(ProcessBuilder.Redirect.INHERIT)
                        .start();
                // A token fits in the pipe's buffer: wait first, then read.
                if (!az.waitFor(30, TimeUnit.SECONDS)) {
                    az.destroyForcibly();
                    throw new PSQLException("az account get-access-token took over 30 s",
                            PSQLState.CONNECTION_REJECTED);
                }
                String token = new String(az.getInputStream().readAllBytes(),
                        StandardCharsets.US_ASCII).trim();
                if (az.exitValue() != 0 || token.isEmpty()) {
                    throw new PSQLException("az account get-access-token failed",
                            PSQLState.CONNECTION_REJECTED);
                }
                return token.toCharArray();
            } catch (IOException | InterruptedException e) {
                throw new PSQLException("could not run az: " + e,
                        PSQLState.CONNECTION_REJECTED, e);
            }
        }
    }

    public static void main(String[] args) throws Exception {
        double pauseSeconds = args.length > 0 ? Double.parseDouble(args[0]) : 0;
        HikariConfig config = new HikariConfig();
        config.setJdbcUrl("jdbc:postgresql://" + System.getenv("PGHOST") + ":"
                + System.getenv().getOrDefault("PGPORT", "5432") + "/" + System.getenv("PGDATABASE")
                // Verify the server's certificate and name against this root certificate.
                + "?sslmode=verify-full&sslrootcert=" + System.getenv("PGSSLROOTCERT"));
        config.setUsername(System.getenv("PGUSER"));
        config.addDataSourceProperty("authenticationPluginClassName",
                EntraTokenPlugin.class.getName());
        config.setMinimumIdle(1);
        config.setMaximumPoolSize(4);
        try (HikariDataSource pool = new HikariDataSource(config)) {
            try (Connection conn = pool.getConnection()) {
                print("first", conn);
            }
            // Tokens last an hour or more (a few seconds in the tests): the pool outlives them.
            Thread.sleep((long) (pauseSeconds * 1000));
            // Holding four connections at once makes the pool open new ones.
            List<Connection> held = new ArrayList<>();
            try {
                for (int i = 0; i < 4; i++) {
                    held.add(pool.getConnection());
                }
                for (Connection conn : held) {
                    print("later", conn);
                }
            } finally {
                for (Connection conn : held) {
                    conn.close();
                }
            }
        }
    }

    static void print(String label, Connection conn) throws SQLException {
        try (Statement statement = conn.createStatement();
                ResultSet row = statement.executeQuery("SELECT current_user, pg_backend_pid()")) {
            row.next();
            System.out.println(label + " " + row.getString(1) + " " + row.getInt(2));
        }
    }
}
