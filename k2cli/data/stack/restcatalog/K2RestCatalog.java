// The Iceberg REST catalog server of `k2 stack up --with rest-catalog`: Iceberg's RESTCatalogAdapter and
// RESTCatalogServlet (iceberg-core tests jar) over a JDBC catalog, served by Jetty on one host and port.
// Iceberg's own RESTCatalogServer binds every interface; this launcher binds the host it is given.
// Run as a single-file source program: java -cp 'libs/*' K2RestCatalog.java catalog.properties
import java.io.FileReader;
import java.io.Reader;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import org.apache.hadoop.conf.Configuration;
import org.apache.iceberg.CatalogUtil;
import org.apache.iceberg.catalog.Catalog;
import org.apache.iceberg.rest.RESTCatalogAdapter;
import org.apache.iceberg.rest.RESTCatalogServlet;
import org.eclipse.jetty.ee10.servlet.ServletContextHandler;
import org.eclipse.jetty.ee10.servlet.ServletHolder;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;

public class K2RestCatalog {
  public static void main(String[] args) throws Exception {
    Properties file = new Properties();
    try (Reader in = new FileReader(args[0])) {
      file.load(in);
    }
    Map<String, String> props = new HashMap<>();
    for (String key : file.stringPropertyNames()) {
      props.put(key, file.getProperty(key));
    }
    String host = props.remove("k2.host");
    int port = Integer.parseInt(props.remove("k2.port"));
    Catalog catalog = CatalogUtil.buildIcebergCatalog("k2_rest", props, new Configuration());
    ServletContextHandler context = new ServletContextHandler();
    context.addServlet(new ServletHolder(new RESTCatalogServlet(new RESTCatalogAdapter(catalog))), "/*");
    Server server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost(host);
    connector.setPort(port);
    server.addConnector(connector);
    server.setHandler(context);
    server.start();
    System.out.println("k2 rest catalog listening on " + host + ":" + port);
    server.join();
  }
}
