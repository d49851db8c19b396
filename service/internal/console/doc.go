// Package console is wxpushd's built-in web console under /console: an
// overview (per-minute counts of the last 24 hours drawn as SVG charts,
// the queue, each app's state with a resume button), a message search,
// a message's detail with its timeline, and the dead letters with a
// redrive button each.
//
// Pages are rendered on the server with html/template from embedded
// templates and assets; reading works without JavaScript, whose only job
// is to refresh the overview. Every response under /console carries a
// strict Content-Security-Policy that allows nothing but the console's own
// stylesheet and script.
//
// An operator signs in with one of the service's API keys. The session
// cookie holds no key: it holds an expiry, a fingerprint of the key
// (an HMAC, so that removing the key ends its sessions) and an HMAC over
// both, keyed by a secret every instance shares (Options.Secret). Every
// state-changing form carries a CSRF token, an HMAC of the session, and
// cross-site POSTs are refused by their Origin and Sec-Fetch-Site
// headers. Without API keys (InsecureNoAuth) the console is open, with an
// anonymous session that still binds the CSRF tokens.
//
// The cookies are Secure, so browsers keep them only over HTTPS (or on
// localhost): serve the console behind TLS. The sign-in page says so when
// it was reached over plain HTTP.
package console
