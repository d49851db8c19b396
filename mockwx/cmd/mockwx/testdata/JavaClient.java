// An unmodified WeChat client in Java's standard library: java.net.http
// calls https://api.weixin.qq.com and reaches mockwx only through the JVM's
// https.proxyHost/https.proxyPort and a truststore holding mockwx's CA.
// The proxy tests run it as a single-file program:
//   java -Dhttps.proxyHost=H -Dhttps.proxyPort=P -Djavax.net.ssl.trustStore=T \
//        -Djavax.net.ssl.trustStorePassword=changeit JavaClient.java APPID SECRET TOUSER
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class JavaClient {
    static final HttpClient http = HttpClient.newHttpClient(); // the default proxy selector reads https.proxyHost

    static String call(String path, String body) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("https://api.weixin.qq.com" + path));
        if (body != null) {
            b.header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body));
        }
        HttpResponse<String> resp = http.send(b.build(), HttpResponse.BodyHandlers.ofString());
        if (resp.statusCode() != 200) throw new RuntimeException("HTTP " + resp.statusCode());
        return resp.body();
    }

    static String field(String json, String name) {
        Matcher m = Pattern.compile("\"" + name + "\":\"?([^\",}]*)").matcher(json);
        return m.find() ? m.group(1) : null;
    }

    public static void main(String[] args) throws Exception {
        String appid = args[0], secret = args[1], touser = args[2];
        String token = field(call("/cgi-bin/token?grant_type=client_credential&appid=" + appid + "&secret=" + secret, null), "access_token");
        if (token == null) throw new RuntimeException("no access_token");
        System.out.println("token: ok");
        String sent = call("/cgi-bin/message/template/send?access_token=" + URLEncoder.encode(token, StandardCharsets.UTF_8),
            "{\"touser\":\"" + touser + "\",\"template_id\":\"notice\",\"data\":{\"keyword1\":{\"value\":\"from Java\"},\"keyword2\":{\"value\":\"java.net.http\"}}}");
        String msgid = field(sent, "msgid");
        System.out.println("send: errcode " + field(sent, "errcode") + " msgid " + msgid);
        String ledger = call("/_mock/messages?limit=1000", null);
        int n = 0;
        Matcher m = Pattern.compile("\"touser\":\"" + Pattern.quote(touser) + "\"[^}]*\"msgid\":" + Pattern.quote(msgid) + "\\b").matcher(ledger);
        while (m.find()) n++;
        System.out.println("ledger: " + n + " entry for " + touser);
    }
}
