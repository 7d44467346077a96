import Testing
import TokenKeeperTesting

/// The PostgreSQL server the store's tests run against: a real one, with the
/// same authentication rules as production over TCP.
@Suite(.enabled(if: PostgresServer.isAvailable, "needs PostgreSQL (apt-get install postgresql)"))
struct PostgresServerTests {
    @Test func superuserRunsSQLOverTheSocketWithoutAPassword() throws {
        let server = try PostgresServer.start()
        #expect(try server.psql("SELECT 1") == "1")
        try server.createDatabase("ledger")
        #expect(try server.psql("SELECT current_database(), current_user", database: "ledger") == "ledger|postgres")
        #expect(try server.psql("SELECT 1; SELECT 2 UNION ALL SELECT 3") == "1\n2\n3")
        let error = #expect(throws: PostgresServerError.self) { try server.psql("SELECT * FROM missing") }
        #expect(error?.standardError.contains("relation \"missing\" does not exist") == true)
    }

    @Test func roleLogsInOverTCPOnlyWithItsPassword() throws {
        let server = try PostgresServer.start()
        try server.createRole("keeper", password: "it's secret")
        try server.createDatabase("ledger", owner: "keeper")

        let created = try server.psqlTCP(
            """
            CREATE TABLE sellers (id text);
            INSERT INTO sellers VALUES ('s1');
            SELECT current_user, count(*) FROM sellers;
            """,
            database: "ledger", user: "keeper", password: "it's secret")
        #expect(created == "keeper|1")
        #expect(server.url(user: "keeper", database: "ledger") == "postgres://keeper@127.0.0.1:\(server.port)/ledger")

        let wrong = #expect(throws: PostgresServerError.self) {
            try server.psqlTCP("SELECT 1", database: "ledger", user: "keeper", password: "guess")
        }
        #expect(wrong?.standardError.contains("password authentication failed") == true)
        let none = #expect(throws: PostgresServerError.self) {
            try server.psqlTCP("SELECT 1", database: "ledger", user: "keeper", password: nil)
        }
        #expect(none?.standardError.contains("password") == true)
        #expect(throws: PostgresServerError.self) {
            try server.psqlTCP("SELECT 1", user: server.superuser, password: nil)
        }
        #expect(try server.psqlTCP("SELECT 1", user: server.superuser, password: server.superuserPassword) == "1")
    }

    @Test func answersAgainOnTheSamePortAfterARestart() throws {
        let server = try PostgresServer.start()
        try server.psql("CREATE TABLE marks (n int); INSERT INTO marks VALUES (7)")
        let port = server.port

        try server.restart()
        #expect(server.port == port)
        #expect(try server.psql("SELECT n FROM marks") == "7")

        try server.stop(mode: "immediate")
        #expect(throws: PostgresServerError.self) { try server.psql("SELECT 1") }
        try server.start()
        #expect(try server.psql("SELECT n FROM marks") == "7")
    }
}
