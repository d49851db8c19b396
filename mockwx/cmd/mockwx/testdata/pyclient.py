"""An unmodified WeChat client in Python's standard library: urllib calls
https://api.weixin.qq.com and reaches mockwx only through HTTPS_PROXY and
SSL_CERT_FILE. The proxy tests run it: python3 pyclient.py APPID SECRET TOUSER"""
import json
import sys
import urllib.request

appid, secret, touser = sys.argv[1:4]
base = "https://api.weixin.qq.com"


def call(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


tok = call(f"/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}")
if "access_token" not in tok:
    sys.exit(f"pyclient: no access_token: errcode {tok.get('errcode')}")
print("token: ok")
sent = call("/cgi-bin/message/template/send?access_token=" + urllib.parse.quote(tok["access_token"]),
            {"touser": touser, "template_id": "notice",
             "data": {"keyword1": {"value": "from Python"}, "keyword2": {"value": "urllib"}}})
print(f"send: errcode {sent['errcode']} msgid {sent.get('msgid', 0)}")
ledger = call("/_mock/messages?limit=1000")
n = sum(1 for m in ledger["messages"] if m["touser"] == touser and m.get("msgid") == sent.get("msgid"))
print(f"ledger: {n} entry for {touser}")
