/**
 * The pure parts of front mode: the X-Forwarded-* wsfpm sets for the site
 * behind (upstream-headers.ts), the https rewrite of the site's absolute
 * redirects, and the redirect port's Location (redirect.ts). The real
 * servers are in front.test.ts.
 */
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { describe, it } from 'node:test';
import { httpsLocation } from '../src/server/redirect.ts';
import { clientView, parseTrustList } from '../src/server/forwarded.ts';
import { overwriteForwarded, secureLocation } from '../src/server/upstream-headers.ts';

const peer = (address: string, tls: boolean) => ({ address, port: 50000, localHost: '127.0.0.1:8443', tls });

describe('overwriteForwarded', () => {
  it('replaces what a client sent, drops Forwarded and X-Real-IP, keeps Host', () => {
    const headers: IncomingHttpHeaders = {
      host: 'example.com',
      'x-forwarded-for': '6.6.6.6, 7.7.7.7',
      'x-forwarded-host': 'evil.example',
      'x-forwarded-proto': 'https',
      'x-forwarded-port': '1',
      forwarded: 'for=6.6.6.6',
      'x-real-ip': '6.6.6.6',
    };
    overwriteForwarded(headers, clientView(parseTrustList('127.0.0.1'), peer('203.0.113.9', false), headers));
    assert.deepEqual(headers, {
      host: 'example.com',
      'x-forwarded-for': '203.0.113.9',
      'x-forwarded-host': 'example.com',
      'x-forwarded-proto': 'http',
      'x-forwarded-port': '80',
    });
  });

  it('the port is the one in the Host the client used, else the scheme\'s', () => {
    const h1: IncomingHttpHeaders = { host: 'example.com:8443' };
    overwriteForwarded(h1, clientView(parseTrustList(''), peer('::ffff:198.51.100.7', true), h1));
    assert.equal(h1['x-forwarded-for'], '198.51.100.7');
    assert.equal(h1['x-forwarded-proto'], 'https');
    assert.equal(h1['x-forwarded-port'], '8443');
    const h2: IncomingHttpHeaders = { host: '[2001:db8::1]' };
    overwriteForwarded(h2, clientView(parseTrustList(''), peer('2001:db8::2', true), h2));
    assert.equal(h2['x-forwarded-port'], '443');
  });

  it('from a --trust-proxy peer (a load balancer in front of wsfpm): what it said, as one value', () => {
    const headers: IncomingHttpHeaders = { host: '10.0.0.5:443', 'x-forwarded-for': '6.6.6.6, 198.51.100.7', 'x-forwarded-host': 'example.com', 'x-forwarded-proto': 'https' };
    overwriteForwarded(headers, clientView(parseTrustList('10.0.0.0/8'), peer('10.0.0.2', false), headers));
    assert.equal(headers['x-forwarded-for'], '198.51.100.7', 'the right-most untrusted address, not the forged first one');
    assert.equal(headers['x-forwarded-host'], 'example.com');
    assert.equal(headers['x-forwarded-proto'], 'https');
  });
});

describe('secureLocation', () => {
  it('http:// on the Host the client used becomes https://', () => {
    assert.equal(secureLocation('http://example.com:8443/dir/', 'example.com:8443'), 'https://example.com:8443/dir/');
    assert.equal(secureLocation('http://example.com', 'example.com'), 'https://example.com');
    assert.equal(secureLocation('HTTP://Example.com/x?y#z', 'example.com'), 'https://Example.com/x?y#z');
    assert.equal(secureLocation('http://example.com?a=1', 'example.com'), 'https://example.com?a=1');
  });

  it('anything else is left alone', () => {
    assert.equal(secureLocation('/relative', 'example.com'), null);
    assert.equal(secureLocation('https://example.com/', 'example.com'), null);
    assert.equal(secureLocation('http://other.example/', 'example.com'), null);
    assert.equal(secureLocation('http://example.com.evil.example/', 'example.com'), null);
    assert.equal(secureLocation('http://example.com:8080/', 'example.com'), null);
    assert.equal(secureLocation('http://example.com@evil.example/', 'example.com'), null);
    assert.equal(secureLocation('http://example.com/', undefined), null);
  });
});

describe('httpsLocation (the redirect port)', () => {
  it('the same URL on https, on wsfpm\'s TLS port (443 left out)', () => {
    assert.equal(httpsLocation('example.com', '/a?b=1', 443), 'https://example.com/a?b=1');
    assert.equal(httpsLocation('example.com:80', '/', 443), 'https://example.com/');
    assert.equal(httpsLocation('example.com:8080', '/x', 8443), 'https://example.com:8443/x');
    assert.equal(httpsLocation('[::1]:80', '/', 443), 'https://[::1]/');
  });

  it('no Location from a Host that is missing or could smuggle one, or a URL that is not a path', () => {
    for (const host of [undefined, '', 'evil.example/x', 'a b', 'example.com\r\nx: y', 'user@example.com', 'x'.repeat(300)]) {
      assert.equal(httpsLocation(host, '/', 443), null, String(host));
    }
    assert.equal(httpsLocation('example.com', 'http://other/', 443), null);
    assert.equal(httpsLocation('example.com', '*', 443), null);
  });
});
