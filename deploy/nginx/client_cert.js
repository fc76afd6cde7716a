// RFC 9440 Client-Cert for nginx (njs): the verified client certificate as
// ":" + base64(DER) + ":". A PEM certificate's body IS base64(DER), only wrapped at 64
// columns between the BEGIN/END lines: drop those lines and the line breaks.
// nginx has no built-in variable in this form ($ssl_client_escaped_cert is URL-encoded PEM,
// $ssl_client_raw_cert PEM with line breaks), and `map` cannot remove every line break.

function clientCert(r) {
    if (r.variables.ssl_client_verify !== 'SUCCESS') {
        return '';  // an empty value makes proxy_set_header send no Client-Cert at all
    }
    var pem = r.variables.ssl_client_raw_cert || '';
    var body = pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
    return body ? ':' + body + ':' : '';
}

export default { clientCert };
