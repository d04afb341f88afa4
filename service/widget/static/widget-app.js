/*
 * Vraagbaak chat widget. Plain JavaScript, no framework, no build step.
 *
 * Loaded by the tiny loader /widget.js, which finds its own <script> tag and queues
 * {script, base, css} on window.VraagbaakWidget.q. This file renders the widget into a
 * Shadow DOM (open mode) on a <vraagbaak-widget> element at the end of <body>: the page's
 * CSS cannot reach inside, and the widget's CSS (widget.css, linked inside the shadow root)
 * cannot reach the page. The only global is window.VraagbaakWidget.
 *
 * Script tag attributes:
 *   data-vraagbaak-key  API key (sent as Authorization: Bearer KEY; empty = no header,
 *                       for the service's loopback dev mode)
 *   data-title          title of the panel and the button (default "Vraag het de gemeente")
 *   data-api            base URL of the service (default: where widget.js came from)
 *   data-open           "true": open the panel at start
 *
 * Talks to POST /v1/ask/stream (Server-Sent Events over POST, read with fetch() and a
 * stream reader: EventSource cannot POST) and POST /v1/feedback. Model text is only ever
 * set with textContent (never innerHTML); links are made only for http(s) URLs.
 */
(function () {
  'use strict';

  var ns = (window.VraagbaakWidget = window.VraagbaakWidget || {});
  if (ns.app) return; // loaded twice
  ns.app = true;
  ns.instances = [];

  var MAX_TURNS = 20; // service default max_history_turns
  var MAX_TURN_CHARS = 8000; // rag.schema.Turn
  var MAX_QUESTION = 2000; // rag.settings max_question_chars
  var MAX_COMMENT = 2000; // service max_comment_chars
  var SVG_NS = 'http://www.w3.org/2000/svg';

  var T = {
    title: 'Vraag het de gemeente',
    subtitle: 'Antwoorden uit gemeentelijke documenten, met bronnen. Controleer belangrijke informatie altijd in de bron.',
    open: 'Open de Vraagbaak',
    close: 'Sluiten',
    closePanel: 'Vraagbaak sluiten',
    newChat: 'Nieuw gesprek',
    conversation: 'Gesprek',
    newChatDone: 'Nieuw gesprek gestart.',
    intro: 'Stel een vraag over begrotingen, jaarstukken, raadsbrieven of beleid. U krijgt een antwoord met verwijzingen naar de documenten.',
    label: 'Uw vraag',
    placeholder: 'Typ uw vraag…',
    hint: 'Enter verstuurt, Shift+Enter geeft een nieuwe regel.',
    send: 'Versturen',
    stop: 'Stoppen',
    you: 'Uw vraag',
    answer: 'Antwoord',
    searching: 'Zoeken in de documenten…',
    writing: 'Het antwoord wordt geschreven…',
    busy: 'Vraagbaak is bezig met uw vraag.',
    wait: 'Wacht tot het antwoord klaar is, of kies Stoppen.',
    sourcesFound: function (n) { return n === 1 ? '1 passage gevonden.' : n + ' passages gevonden.'; },
    sources: 'Bronnen',
    source: 'Bron',
    section: 'Onderdeel',
    page: 'pagina',
    document: 'Document',
    openDoc: 'Open het document',
    openAt: function (page) { return page ? 'Open het document op pagina ' + page : 'Open het document bij deze passage'; },
    onWebsite: 'Bekijk op de website',
    newTab: '(opent in een nieuw tabblad)',
    snippet: 'Fragment tonen',
    citeLabel: function (n, title) { return 'Bron ' + n + ': ' + title; },
    noteLabel: function (n) { return 'Bron ' + n; },
    refusedTitle: 'Geen antwoord gevonden',
    refusedTip: {
      no_relevant_passages: 'In de documenten staat hier niets over. Probeer andere woorden of een preciezere vraag.',
      not_dutch: 'Stel uw vraag in het Nederlands.',
      injection: 'Deze vraag kan de Vraagbaak niet beantwoorden.',
      _: 'Probeer uw vraag anders te formuleren, of zoek de informatie in de documenten zelf.'
    },
    copy: 'Kopieer antwoord',
    copied: 'Antwoord gekopieerd.',
    copyFailed: 'Kopiëren is niet gelukt. Selecteer de tekst en kopieer die zelf.',
    helpful: 'Was dit antwoord nuttig?',
    up: 'Ja, nuttig',
    down: 'Nee, niet nuttig',
    thanks: 'Bedankt voor uw beoordeling.',
    thanksMore: 'Bedankt voor uw beoordeling. U kunt hieronder nog een toelichting geven.',
    comment: 'Toelichting (optioneel)',
    commentSend: 'Toelichting versturen',
    commentThanks: 'Bedankt, uw toelichting is verstuurd.',
    feedbackFailed: 'Uw beoordeling kon niet worden verstuurd. Probeer het later opnieuw.',
    retry: 'Opnieuw proberen',
    retryIn: function (s) { return 'Opnieuw proberen (nog ' + s + ' s)'; },
    retryReady: 'U kunt het nu opnieuw proberen.',
    errTitle: 'Er ging iets mis',
    unreachable: 'De Vraagbaak is nu niet bereikbaar. Controleer uw netwerkverbinding en probeer het later opnieuw.',
    rateLimited: function (w) { return 'U heeft veel vragen kort na elkaar gesteld. U kunt ' + w + ' weer een vraag stellen.'; },
    overloaded: function (w) { return 'De Vraagbaak is op dit moment erg druk of wordt opgestart. Probeer het ' + w + ' opnieuw.'; },
    unauthorized: 'De Vraagbaak is op deze pagina niet goed ingesteld (de toegangssleutel ontbreekt of is ongeldig). Neem contact op met de beheerder van het intranet.',
    invalid: 'Uw vraag kon niet worden verwerkt. Is hij misschien te lang? Maak hem korter en probeer het opnieuw.',
    tooLong: 'Uw vraag is te lang (maximaal ' + MAX_QUESTION + ' tekens).',
    serverError: 'Er ging iets mis bij het maken van het antwoord. Probeer het opnieuw.',
    broken: 'De verbinding werd verbroken voordat het antwoord af was. Wat al binnen was, ziet u hierboven.',
    stopped: 'U heeft het antwoord gestopt.',
    partialNote: 'Onvolledig antwoord',
    waitSeconds: function (s) {
      s = Math.max(1, Math.ceil(s));
      if (s < 90) return 'over ' + s + (s === 1 ? ' seconde' : ' seconden');
      var m = Math.round(s / 60);
      return 'over ' + m + (m === 1 ? ' minuut' : ' minuten');
    },
    later: 'later'
  };

  // ------------------------------------------------------------------ small DOM helpers

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      for (var k in attrs) {
        if (!Object.prototype.hasOwnProperty.call(attrs, k) || attrs[k] == null || attrs[k] === false) continue;
        if (k === 'text') node.textContent = attrs[k];
        else if (k === 'class') node.className = attrs[k];
        else if (k.slice(0, 2) === 'on') node.addEventListener(k.slice(2), attrs[k]);
        else node.setAttribute(k, attrs[k] === true ? '' : String(attrs[k]));
      }
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    if (children == null) return node;
    if (!Array.isArray(children)) children = [children];
    for (var i = 0; i < children.length; i++) {
      var c = children[i];
      if (c == null || c === false) continue;
      node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  // Icons: inline SVG built with createElementNS (decorative: aria-hidden).
  var ICONS = {
    chat: 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z',
    close: 'M6 6l12 12M18 6L6 18',
    plus: 'M12 5v14M5 12h14',
    copy: 'M9 9h10v12H9zM5 15H4V3h12v1',
    up: 'M7 11v9H4v-9zM7 11l4-8a2 2 0 0 1 3 2l-1 4h6a2 2 0 0 1 2 2l-2 7a2 2 0 0 1-2 2H7',
    down: 'M7 13V4H4v9zM7 13l4 8a2 2 0 0 0 3-2l-1-4h6a2 2 0 0 0 2-2l-2-7a2 2 0 0 0-2-2H7',
    retry: 'M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7',
    info: 'M12 8h.01M11 12h1v5h1M12 3a9 9 0 1 0 0 18a9 9 0 0 0 0-18z',
    alert: 'M12 3l10 18H2zM12 10v4M12 17h.01',
    send: 'M4 12l16-8-6 16-2-7z',
    stop: 'M7 7h10v10H7z',
    ext: 'M14 4h6v6M20 4l-9 9M18 14v6H4V6h6'
  };

  function icon(name) {
    var svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    svg.setAttribute('class', 'vb-icon');
    var path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', ICONS[name]);
    svg.appendChild(path);
    return svg;
  }

  function srOnly(text) {
    return el('span', { class: 'vb-sr', text: text });
  }

  var uid = 0;
  function nextId(prefix) {
    uid += 1;
    return 'vb-' + prefix + '-' + uid;
  }

  // A link only for absolute http(s) URLs (never javascript:, data:, file paths, …).
  function safeHref(url) {
    if (typeof url !== 'string' || !/^https?:\/\//i.test(url.trim())) return null;
    try {
      var u = new URL(url.trim());
      return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  // ------------------------------------------------------------------ answer text rendering

  var MARKER = /\[(\d+(?:\s*[,;]\s*\d+)*)\]/g;

  function stripMarkers(text) {
    return String(text || '').replace(/\s*\[\d+(?:\s*[,;]\s*\d+)*\]/g, '').replace(/\s+/g, ' ').trim();
  }

  // Inline text: **bold** and [n] citation markers (as buttons when the citation exists).
  function renderInline(parent, text, makeCite) {
    var parts = String(text).split(/\*\*([^*]+)\*\*/);
    for (var i = 0; i < parts.length; i++) {
      var target = parent;
      if (i % 2 === 1) {
        target = el('strong');
        parent.appendChild(target);
      }
      var s = parts[i];
      var last = 0;
      var m;
      MARKER.lastIndex = 0;
      while ((m = MARKER.exec(s)) !== null) {
        if (m.index > last) target.appendChild(document.createTextNode(s.slice(last, m.index)));
        var nums = m[1].split(/[,;]/);
        for (var j = 0; j < nums.length; j++) {
          var n = parseInt(nums[j], 10);
          var b = makeCite ? makeCite(n) : null;
          target.appendChild(b || document.createTextNode('[' + n + ']'));
        }
        last = m.index + m[0].length;
      }
      if (last < s.length) target.appendChild(document.createTextNode(s.slice(last)));
    }
  }

  // Block text: paragraphs (blank lines), bullet and numbered lists, line breaks.
  function renderText(container, text, makeCite) {
    clear(container);
    var blocks = String(text || '').replace(/\r\n?/g, '\n').split(/\n{2,}/);
    blocks.forEach(function (block) {
      block = block.replace(/^\n+|\n+$/g, '');
      if (!block.trim()) return;
      var lines = block.split('\n');
      var bullet = /^\s*[-*•]\s+/;
      var numbered = /^\s*\d+[.)]\s+/;
      if (lines.every(function (l) { return bullet.test(l); }) || lines.every(function (l) { return numbered.test(l); })) {
        var isNum = numbered.test(lines[0]);
        var list = el(isNum ? 'ol' : 'ul');
        lines.forEach(function (l) {
          var li = el('li');
          renderInline(li, l.replace(isNum ? numbered : bullet, ''), makeCite);
          list.appendChild(li);
        });
        container.appendChild(list);
        return;
      }
      var p = el('p');
      lines.forEach(function (l, i) {
        if (i) p.appendChild(el('br'));
        renderInline(p, l, makeCite);
      });
      container.appendChild(p);
    });
  }

  function sectionText(c) {
    var bits = [];
    if (c.label) bits.push(c.label);
    if (c.section) bits.push(c.section);
    if (c.page != null) bits.push(T.page + ' ' + c.page + (c.page_end != null && c.page_end !== c.page ? '–' + c.page_end : ''));
    return bits.join(' · ');
  }

  // The document viewer at the cited passage: the citation's signed link (relative to the
  // API, or absolute when the service has a public base URL). Only http(s) is ever a link.
  function viewerHref(c, api) {
    if (typeof c.url !== 'string' || !c.url) return null;
    var url = c.url.charAt(0) === '/' ? (api || window.location.origin) + c.url : c.url;
    return safeHref(url);
  }

  // ------------------------------------------------------------------ SSE over fetch()

  // Reads a text/event-stream body and calls onEvent(name, data) per event. Resolves when
  // the body ends; rejects when the connection breaks.
  function readEventStream(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder('utf-8');
    var buf = '';
    var name = 'message';
    var data = [];

    function line(l) {
      if (l === '') {
        if (data.length) onEvent(name, data.join('\n'));
        name = 'message';
        data = [];
      } else if (l.charAt(0) === ':') {
        // comment (keep-alive ping)
      } else {
        var i = l.indexOf(':');
        var field = i < 0 ? l : l.slice(0, i);
        var value = i < 0 ? '' : l.slice(i + 1);
        if (value.charAt(0) === ' ') value = value.slice(1);
        if (field === 'event') name = value || 'message';
        else if (field === 'data') data.push(value);
      }
    }

    function feed(text, final) {
      buf += text;
      var start = 0;
      for (var i = 0; i < buf.length; i++) {
        var c = buf.charCodeAt(i);
        if (c === 10) {
          line(buf.slice(start, i));
          start = i + 1;
        } else if (c === 13) {
          if (i + 1 >= buf.length && !final) break; // a \n may follow in the next chunk
          line(buf.slice(start, i));
          if (buf.charCodeAt(i + 1) === 10) i += 1;
          start = i + 1;
        }
      }
      buf = buf.slice(start);
      if (final && buf) {
        line(buf);
        buf = '';
      }
    }

    function pump() {
      return reader.read().then(function (r) {
        if (r.done) {
          feed(decoder.decode(), true);
          return;
        }
        feed(decoder.decode(r.value, { stream: true }), false);
        return pump();
      });
    }
    return pump();
  }

  function retryAfterSeconds(response, body) {
    var h = response.headers.get('Retry-After');
    var s = h != null ? parseFloat(h) : NaN;
    if (!isFinite(s) && h) {
      var d = Date.parse(h);
      if (!isNaN(d)) s = (d - Date.now()) / 1000;
    }
    if (!isFinite(s) && body && body.error && body.error.message) {
      var m = /retry after (\d+(?:\.\d+)?)/i.exec(body.error.message);
      if (m) s = parseFloat(m[1]);
    }
    return isFinite(s) ? Math.max(1, Math.ceil(s)) : null;
  }

  // ------------------------------------------------------------------ the widget

  function Widget(cfg) {
    var script = cfg.script || {};
    var data = script.dataset || {};
    this.base = String(cfg.base || '').replace(/\/+$/, '');
    this.api = String(data.api || this.base).replace(/\/+$/, '');
    this.key = (data.vraagbaakKey || '').trim();
    this.title = (data.title || '').trim() || T.title;
    this.cssUrl = cfg.css;
    this.history = []; // completed turns: {role, content}
    this.busy = false;
    this.current = null; // the running request: {controller, gen}
    this.gen = 0; // bumps on "nieuw gesprek": late events of an old conversation are ignored
    this.build();
    if (data.open === 'true') this.open(false);
  }

  Widget.prototype.build = function () {
    var self = this;
    var host = document.createElement('vraagbaak-widget');
    host.setAttribute('data-version', String(ns.version || ''));
    var root = host.attachShadow({ mode: 'open' });
    this.host = host;
    this.root = root;

    var ready = new Promise(function (resolve) {
      if (!self.cssUrl) return resolve();
      var link = el('link', { rel: 'stylesheet', href: self.cssUrl });
      link.addEventListener('load', resolve);
      link.addEventListener('error', resolve);
      root.appendChild(link);
    });

    var panelId = nextId('panel');
    var titleId = nextId('title');
    var inputId = nextId('input');
    var hintId = nextId('hint');

    this.launcher = el('button', {
      type: 'button',
      class: 'vb-launcher',
      'aria-expanded': 'false',
      'aria-controls': panelId,
      onclick: function () { self.toggle(); }
    }, [icon('chat'), el('span', { class: 'vb-launcher-text', text: this.title })]);

    this.live = el('div', { class: 'vb-sr', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' });

    this.newBtn = el('button', {
      type: 'button', class: 'vb-btn vb-btn-quiet vb-new', onclick: function () { self.reset(); }
    }, [icon('plus'), el('span', { text: T.newChat })]);
    this.closeBtn = el('button', {
      type: 'button', class: 'vb-btn vb-btn-icon vb-close', 'aria-label': T.closePanel, title: T.close,
      onclick: function () { self.close(true); }
    }, [icon('close')]);

    this.log = el('div', { class: 'vb-log', role: 'region', 'aria-label': T.conversation, tabindex: '0' });
    this.intro = el('p', { class: 'vb-intro', text: T.intro });
    this.log.appendChild(this.intro);

    this.input = el('textarea', {
      id: inputId, class: 'vb-input vb-question', rows: '2', maxlength: String(MAX_QUESTION),
      placeholder: T.placeholder, 'aria-describedby': hintId, autocomplete: 'off'
    });
    this.sendBtn = el('button', { type: 'submit', class: 'vb-btn vb-btn-primary vb-send' }, [icon('send'), el('span', { text: T.send })]);
    this.stopBtn = el('button', {
      type: 'button', class: 'vb-btn vb-btn-secondary vb-stop', hidden: true, onclick: function () { self.stop(); }
    }, [icon('stop'), el('span', { text: T.stop })]);
    this.form = el('form', { class: 'vb-form', novalidate: true }, [
      el('label', { for: inputId, class: 'vb-label', text: T.label }),
      this.input,
      el('div', { class: 'vb-form-row' }, [
        el('p', { id: hintId, class: 'vb-hint', text: T.hint }),
        this.stopBtn,
        this.sendBtn
      ])
    ]);
    this.form.addEventListener('submit', function (e) {
      e.preventDefault();
      self.submit();
    });
    this.input.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        self.submit();
      }
    });

    this.panel = el('section', {
      id: panelId, class: 'vb-panel', role: 'dialog', 'aria-modal': 'false', 'aria-labelledby': titleId, hidden: true
    }, [
      el('div', { class: 'vb-header' }, [
        el('div', { class: 'vb-heading' }, [
          el('h2', { id: titleId, class: 'vb-title', text: this.title }),
          el('p', { class: 'vb-subtitle', text: T.subtitle })
        ]),
        el('div', { class: 'vb-header-actions' }, [this.newBtn, this.closeBtn])
      ]),
      this.log,
      this.form
    ]);
    this.panel.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' && !e.defaultPrevented) {
        e.preventDefault();
        self.close(true);
      }
    });

    this.container = el('div', { class: 'vb-root', lang: 'nl', dir: 'ltr' }, [this.panel, this.launcher, this.live]);
    ready.then(function () {
      root.appendChild(self.container);
      host.setAttribute('data-ready', 'true');
    });
    (document.body || document.documentElement).appendChild(host);
  };

  Widget.prototype.announce = function (text) {
    var live = this.live;
    // clear first so that the same text twice is announced twice
    live.textContent = '';
    setTimeout(function () { live.textContent = text; }, 60);
  };

  Widget.prototype.isOpen = function () {
    return !this.panel.hidden;
  };

  Widget.prototype.open = function (focus) {
    this.panel.hidden = false;
    this.launcher.setAttribute('aria-expanded', 'true');
    this.container.classList.add('vb-is-open');
    if (focus !== false) this.input.focus();
  };

  Widget.prototype.close = function (focusLauncher) {
    this.panel.hidden = true;
    this.launcher.setAttribute('aria-expanded', 'false');
    this.container.classList.remove('vb-is-open');
    if (focusLauncher) this.launcher.focus();
  };

  Widget.prototype.toggle = function () {
    if (this.isOpen()) this.close(true);
    else this.open(true);
  };

  Widget.prototype.headers = function () {
    var h = { 'Content-Type': 'application/json', Accept: 'text/event-stream' };
    if (this.key) h.Authorization = 'Bearer ' + this.key;
    return h;
  };

  Widget.prototype.setBusy = function (busy) {
    this.busy = busy;
    this.stopBtn.hidden = !busy;
    this.sendBtn.setAttribute('aria-disabled', busy ? 'true' : 'false');
    this.log.setAttribute('aria-busy', busy ? 'true' : 'false');
  };

  Widget.prototype.submit = function () {
    if (this.busy) {
      this.announce(T.wait);
      return;
    }
    var q = this.input.value.trim();
    if (!q) {
      this.input.focus();
      return;
    }
    if (q.length > MAX_QUESTION) {
      this.announce(T.tooLong);
      return;
    }
    this.input.value = '';
    if (this.intro.parentNode) this.intro.parentNode.removeChild(this.intro);
    this.log.appendChild(el('div', { class: 'vb-msg vb-msg-user' }, [
      el('h3', { class: 'vb-sr', text: T.you }),
      el('p', { class: 'vb-bubble', text: q })
    ]));
    var turn = new Turn(this, q, this.history.slice());
    this.log.appendChild(turn.node);
    turn.run();
  };

  Widget.prototype.stop = function () {
    if (this.current) this.current.stop();
    this.input.focus(); // the Stop button disappears
  };

  Widget.prototype.reset = function () {
    this.gen += 1;
    if (this.current) this.current.stop(true);
    this.current = null;
    this.setBusy(false);
    this.history = [];
    clear(this.log);
    this.log.appendChild(this.intro);
    this.input.value = '';
    this.input.focus();
    this.announce(T.newChatDone);
  };

  Widget.prototype.remember = function (question, answer) {
    this.history.push({ role: 'user', content: question.slice(0, MAX_TURN_CHARS) });
    this.history.push({ role: 'assistant', content: String(answer || '').slice(0, MAX_TURN_CHARS) });
    if (this.history.length > MAX_TURNS) this.history = this.history.slice(-MAX_TURNS);
  };

  Widget.prototype.scrollToEnd = function () {
    this.log.scrollTop = this.log.scrollHeight;
  };

  // ------------------------------------------------------------------ one question → one answer

  function Turn(widget, question, history) {
    this.w = widget;
    this.question = question;
    this.history = history;
    this.node = el('article', { class: 'vb-msg vb-msg-answer' });
    this.heading = el('h3', { class: 'vb-sr', text: T.answer });
    this.status = el('p', { class: 'vb-status' });
    this.text = el('div', { class: 'vb-text' });
    this.extra = el('div', { class: 'vb-extra' });
    this.bubble = el('div', { class: 'vb-bubble' }, [this.status, this.text, this.extra]);
    append(this.node, [this.heading, this.bubble]);
  }

  Turn.prototype.setStatus = function (text) {
    this.status.hidden = !text;
    clear(this.status);
    if (text) append(this.status, [el('span', { class: 'vb-spinner', 'aria-hidden': 'true' }), text]);
  };

  Turn.prototype.run = function () {
    var self = this;
    var w = this.w;
    var gen = w.gen;
    var controller = typeof AbortController !== 'undefined' ? new AbortController() : null;
    var state = { stopped: false, silent: false, ended: false };
    this.raw = '';
    this.sources = [];
    this.node.className = 'vb-msg vb-msg-answer vb-streaming';
    this.text.setAttribute('aria-busy', 'true');
    clear(this.text);
    clear(this.extra);
    this.streamNode = el('p', { class: 'vb-stream' });
    this.text.appendChild(this.streamNode);
    this.setStatus(T.searching);
    w.setBusy(true);
    w.announce(T.busy);
    w.current = {
      stop: function (silent) {
        state.stopped = true;
        state.silent = !!silent;
        if (controller) controller.abort();
      }
    };
    w.scrollToEnd();

    function alive() {
      return w.gen === gen && !state.ended;
    }

    function finish() {
      state.ended = true;
      if (w.gen === gen) {
        w.current = null;
        w.setBusy(false);
      }
      self.text.removeAttribute('aria-busy');
    }

    var body = JSON.stringify({ question: this.question, history: this.history });
    var request;
    try {
      request = fetch(w.api + '/v1/ask/stream', {
        method: 'POST',
        headers: w.headers(),
        body: body,
        mode: 'cors',
        credentials: 'omit',
        cache: 'no-store',
        signal: controller ? controller.signal : undefined
      });
    } catch (e) {
      request = Promise.reject(e);
    }

    request.then(function (response) {
      if (!alive()) return;
      if (!response.ok) {
        return response.text().then(function (t) {
          var j = null;
          try { j = JSON.parse(t); } catch (e) { /* not JSON */ }
          if (alive()) self.httpError(response, j);
          finish();
        });
      }
      var gotDone = false;
      var gotError = false;
      return readEventStream(response, function (name, data) {
        if (!alive()) return;
        var ev;
        try { ev = JSON.parse(data); } catch (e) { return; }
        if (name === 'sources') {
          self.sources = ev.sources || [];
          self.setStatus(T.writing);
          w.announce(T.sourcesFound(self.sources.length) + ' ' + T.writing);
        } else if (name === 'token') {
          self.raw += ev.text || '';
          self.streamNode.textContent = self.raw;
          w.scrollToEnd();
        } else if (name === 'done') {
          gotDone = true;
          self.done(ev.answer || {});
        } else if (name === 'error') {
          gotError = true;
          self.streamError(ev);
        }
      }).then(function () {
        if (!alive()) return;
        if (!gotDone && !gotError) self.broken(state.stopped ? 'stopped' : 'broken');
        finish();
      });
    }).catch(function (err) {
      if (w.gen !== gen || state.ended) return; // a new conversation: forget this one
      if (state.stopped) {
        if (!state.silent) self.broken('stopped');
      } else if (self.raw || self.sources.length) {
        self.broken('broken'); // the stream broke halfway
      } else {
        self.fail(T.unreachable, null, err);
      }
      finish();
    });
  };

  // The final, validated answer replaces the streamed text.
  Turn.prototype.done = function (answer) {
    var self = this;
    var w = this.w;
    this.answer = answer;
    this.setStatus('');
    this.node.className = 'vb-msg vb-msg-answer vb-done' + (answer.refused ? ' vb-refused' : '');
    clear(this.extra);
    var cites = {};
    (answer.citations || []).forEach(function (c) { cites[c.marker] = c; });
    this.cites = cites;
    this.noteFor = null;

    if (answer.refused) {
      clear(this.text);
      var tip = T.refusedTip[answer.refusal_reason] || T.refusedTip._;
      append(this.text, [
        el('p', { class: 'vb-refused-title' }, [icon('info'), el('strong', { text: T.refusedTitle })]),
        el('p', { text: answer.answer || '' }),
        el('p', { class: 'vb-muted', text: tip })
      ]);
      w.announce(T.refusedTitle + '. ' + stripMarkers(answer.answer));
    } else {
      renderText(this.text, answer.answer || '', function (n) { return self.citeButton(n); });
      this.note = el('div', { class: 'vb-note', role: 'region', tabindex: '-1', hidden: true });
      this.note.addEventListener('keydown', function (e) {
        if (e.key === 'Escape') {
          e.preventDefault();
          self.closeNote(true);
        }
      });
      this.text.appendChild(this.note);
      this.renderSources();
      var n = (answer.citations || []).length;
      w.announce(T.answer + ': ' + stripMarkers(answer.answer) + (n ? ' (' + n + ' ' + (n === 1 ? 'bron' : 'bronnen') + ')' : ''));
    }
    this.renderActions();
    w.remember(this.question, answer.answer || '');
    w.scrollToEnd();
  };

  Turn.prototype.citeButton = function (n) {
    var self = this;
    var c = this.cites[n];
    if (!c) return null;
    var b = el('button', {
      type: 'button', class: 'vb-cite', 'aria-expanded': 'false',
      'aria-label': T.citeLabel(n, c.title || c.doc_id || ''),
      'data-marker': String(n),
      text: '[' + n + ']'
    });
    b.addEventListener('click', function () {
      if (self.noteFor === b) self.closeNote(true);
      else self.openNote(n, b);
    });
    return b;
  };

  Turn.prototype.openNote = function (n, button) {
    var c = this.cites[n];
    var note = this.note;
    var self = this;
    if (this.noteFor) this.noteFor.setAttribute('aria-expanded', 'false');
    this.noteFor = button;
    button.setAttribute('aria-expanded', 'true');
    var id = note.id || (note.id = nextId('note'));
    button.setAttribute('aria-controls', id);
    clear(note);
    note.setAttribute('aria-label', T.noteLabel(n));
    var meta = sectionText(c);
    append(note, [
      el('div', { class: 'vb-note-head' }, [
        el('p', { class: 'vb-note-title' }, [el('span', { class: 'vb-note-num', text: '[' + n + ']' }), ' ', el('strong', { text: c.title || c.doc_id })]),
        el('button', {
          type: 'button', class: 'vb-btn vb-btn-icon', 'aria-label': T.close + ' (' + T.noteLabel(n) + ')', title: T.close,
          onclick: function () { self.closeNote(true); }
        }, [icon('close')])
      ]),
      meta ? el('p', { class: 'vb-muted', text: T.section + ': ' + meta }) : null,
      c.snippet ? el('blockquote', { class: 'vb-snippet', text: c.snippet }) : null,
      docLink(c, this.w.api)
    ]);
    note.hidden = false;
    note.focus();
  };

  Turn.prototype.closeNote = function (focusMarker) {
    if (!this.note) return;
    var b = this.noteFor;
    this.note.hidden = true;
    this.noteFor = null;
    if (b) {
      b.setAttribute('aria-expanded', 'false');
      if (focusMarker) b.focus();
    }
  };

  function docLink(c, api) {
    var viewer = viewerHref(c, api);
    var web = safeHref(c.public_url) || safeHref(c.source);
    var links = [];
    if (viewer) {
      links.push(el('a', { class: 'vb-viewer-link', href: viewer, target: '_blank', rel: 'noopener noreferrer' }, [
        T.openAt(c.page), icon('ext'), srOnly(' ' + T.newTab)
      ]));
    }
    if (web) {
      if (links.length) links.push(' · ');
      links.push(el('a', { href: web, target: '_blank', rel: 'noopener noreferrer' }, [
        viewer ? T.onWebsite : T.openDoc, icon('ext'), srOnly(' ' + T.newTab)
      ]));
    }
    var path = c.source && !safeHref(c.source)
      ? el('p', { class: 'vb-muted vb-path' }, [T.document + ': ', el('span', { text: c.source })])
      : null;
    if (!links.length) return path;
    return el('div', {}, [el('p', { class: 'vb-doclink' }, links), path]);
  }

  Turn.prototype.renderSources = function () {
    var citations = (this.answer.citations || []).slice().sort(function (a, b) { return a.marker - b.marker; });
    if (!citations.length) return;
    var headId = nextId('sources');
    var list = el('ol', { class: 'vb-sources', 'aria-labelledby': headId });
    var api = this.w.api;
    citations.forEach(function (c) {
      var href = viewerHref(c, api) || safeHref(c.public_url) || safeHref(c.source);
      var title = href
        ? el('a', { href: href, target: '_blank', rel: 'noopener noreferrer' }, [c.title || c.doc_id, srOnly(' ' + T.newTab)])
        : el('span', { class: 'vb-source-title', text: c.title || c.doc_id });
      var meta = sectionText(c);
      list.appendChild(el('li', { 'data-marker': String(c.marker) }, [
        el('span', { class: 'vb-source-num', 'aria-hidden': 'true', text: '[' + c.marker + ']' }),
        el('div', { class: 'vb-source-body' }, [
          srOnly(T.source + ' ' + c.marker + ': '),
          title,
          meta ? el('span', { class: 'vb-muted vb-source-meta', text: meta }) : null,
          !safeHref(c.source) && c.source ? el('span', { class: 'vb-muted vb-path', text: c.source }) : null,
          c.snippet ? el('details', { class: 'vb-details' }, [
            el('summary', { text: T.snippet }),
            el('blockquote', { class: 'vb-snippet', text: c.snippet })
          ]) : null
        ])
      ]));
    });
    append(this.extra, [el('h4', { id: headId, class: 'vb-sources-title', text: T.sources }), list]);
  };

  Turn.prototype.renderActions = function () {
    var self = this;
    var w = this.w;
    var answer = this.answer;
    var copyBtn = el('button', { type: 'button', class: 'vb-btn vb-btn-quiet vb-copy' }, [icon('copy'), el('span', { text: T.copy })]);
    copyBtn.addEventListener('click', function () { self.copy(copyBtn); });

    var row = el('div', { class: 'vb-actions' }, [copyBtn]);
    var fb = el('div', { class: 'vb-feedback', role: 'group' });
    var fbLabelId = nextId('fb');
    fb.setAttribute('aria-labelledby', fbLabelId);
    var up = el('button', { type: 'button', class: 'vb-btn vb-btn-icon vb-thumb vb-up', 'aria-pressed': 'false', 'aria-label': T.up, title: T.up }, [icon('up')]);
    var down = el('button', { type: 'button', class: 'vb-btn vb-btn-icon vb-thumb vb-down', 'aria-pressed': 'false', 'aria-label': T.down, title: T.down }, [icon('down')]);
    var msg = el('p', { class: 'vb-fb-msg vb-muted', hidden: true });
    append(fb, [el('span', { id: fbLabelId, class: 'vb-fb-label', text: T.helpful }), up, down]);
    row.appendChild(fb);
    this.extra.appendChild(row);
    this.extra.appendChild(msg);

    var commentId = nextId('comment');
    var comment = el('textarea', { id: commentId, class: 'vb-input vb-comment', rows: '2', maxlength: String(MAX_COMMENT) });
    var commentBtn = el('button', { type: 'submit', class: 'vb-btn vb-btn-secondary' }, [el('span', { text: T.commentSend })]);
    var form = el('form', { class: 'vb-comment-form', hidden: true, novalidate: true }, [
      el('label', { for: commentId, class: 'vb-label', text: T.comment }), comment, el('div', { class: 'vb-form-row' }, [commentBtn])
    ]);
    this.extra.appendChild(form);
    var rating = null;

    function send(r, text) {
      var payload = { answer_id: answer.id, rating: r };
      if (text) payload.comment = text;
      var h = { 'Content-Type': 'application/json' };
      if (w.key) h.Authorization = 'Bearer ' + w.key;
      return fetch(w.api + '/v1/feedback', {
        method: 'POST', headers: h, body: JSON.stringify(payload), mode: 'cors', credentials: 'omit', cache: 'no-store'
      }).then(function (resp) {
        if (!resp.ok) throw new Error('HTTP ' + resp.status);
      });
    }

    function say(text) {
      msg.hidden = false;
      msg.textContent = text;
      w.announce(text);
    }

    function rate(r) {
      if (rating === r) return;
      rating = r;
      up.setAttribute('aria-pressed', r === 'up' ? 'true' : 'false');
      down.setAttribute('aria-pressed', r === 'down' ? 'true' : 'false');
      send(r).then(function () {
        form.hidden = false;
        say(T.thanksMore);
      }, function () {
        say(T.feedbackFailed);
      });
    }
    up.addEventListener('click', function () { rate('up'); });
    down.addEventListener('click', function () { rate('down'); });
    comment.addEventListener('keydown', function (e) {
      if (e.key === 'Escape') e.stopPropagation(); // Escape in the comment box does not close the panel
    });
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var text = comment.value.trim();
      if (!text || !rating) return;
      send(rating, text).then(function () {
        form.hidden = true;
        say(T.commentThanks);
        msg.setAttribute('tabindex', '-1');
        msg.focus(); // the form (and the focused button) is gone
      }, function () {
        say(T.feedbackFailed);
      });
    });
  };

  Turn.prototype.copyText = function () {
    var a = this.answer || {};
    var out = String(a.answer || '');
    var cites = (a.citations || []).slice().sort(function (x, y) { return x.marker - y.marker; });
    if (cites.length) {
      out += '\n\n' + T.sources + ':\n' + cites.map(function (c) {
        var meta = sectionText(c);
        return '[' + c.marker + '] ' + (c.title || c.doc_id) + (meta ? ' — ' + meta : '') + (c.source ? ' (' + c.source + ')' : '');
      }).join('\n');
    }
    return out;
  };

  Turn.prototype.copy = function (button) {
    var w = this.w;
    var text = this.copyText();
    var label = button.querySelector('span');
    function ok() {
      label.textContent = T.copied;
      w.announce(T.copied);
      setTimeout(function () { label.textContent = T.copy; }, 2500);
    }
    function fallback() {
      var ta = el('textarea', { class: 'vb-offscreen', readonly: true, 'aria-hidden': 'true', tabindex: '-1' });
      ta.value = text;
      w.container.appendChild(ta);
      ta.select();
      var done = false;
      try { done = document.execCommand('copy'); } catch (e) { done = false; }
      w.container.removeChild(ta);
      button.focus();
      if (done) ok();
      else w.announce(T.copyFailed);
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(ok, fallback);
    } else {
      fallback();
    }
  };

  // An error before or while streaming. `wait`: seconds until a retry makes sense.
  Turn.prototype.fail = function (message, wait, err) {
    if (err && window.console) console.warn('Vraagbaak:', err);
    this.setStatus('');
    this.node.className = 'vb-msg vb-msg-answer vb-error';
    var partial = !!this.raw;
    if (!partial) clear(this.text);
    else this.markPartial();
    this.errorBox(message, wait);
  };

  Turn.prototype.markPartial = function () {
    this.node.classList.add('vb-partial');
    if (!this.text.querySelector('.vb-partial-label')) {
      this.text.insertBefore(el('p', { class: 'vb-partial-label', text: T.partialNote }), this.text.firstChild);
    }
  };

  Turn.prototype.errorBox = function (message, wait) {
    var self = this;
    var w = this.w;
    clear(this.extra);
    var retry = el('button', { type: 'button', class: 'vb-btn vb-btn-secondary vb-retry' }, [icon('retry'), el('span', { text: T.retry })]);
    var box = el('div', { class: 'vb-alert', role: 'alert' }, [
      el('p', { class: 'vb-alert-title' }, [icon('alert'), el('strong', { text: T.errTitle })]),
      el('p', { class: 'vb-alert-text', text: message }),
      el('div', { class: 'vb-form-row' }, [retry])
    ]);
    this.extra.appendChild(box);
    var label = retry.querySelector('span');
    var timer = null;
    if (wait) {
      var until = Date.now() + wait * 1000;
      retry.setAttribute('aria-disabled', 'true');
      var tick = function () {
        var left = Math.ceil((until - Date.now()) / 1000);
        if (left <= 0 || !retry.isConnected) {
          clearInterval(timer);
          retry.removeAttribute('aria-disabled');
          label.textContent = T.retry;
          if (retry.isConnected) w.announce(T.retryReady);
          return;
        }
        label.textContent = T.retryIn(left);
      };
      tick();
      timer = setInterval(tick, 1000);
    }
    retry.addEventListener('click', function () {
      if (retry.getAttribute('aria-disabled') === 'true' || w.busy) return;
      if (timer) clearInterval(timer);
      w.input.focus();
      self.run();
    });
    w.scrollToEnd();
  };

  Turn.prototype.httpError = function (response, body) {
    var s = response.status;
    var wait = retryAfterSeconds(response, body);
    if (s === 429) this.fail(T.rateLimited(wait ? T.waitSeconds(wait) : T.later), wait);
    else if (s === 503) this.fail(T.overloaded(wait ? T.waitSeconds(wait) : T.later), wait);
    else if (s === 401 || s === 403) this.fail(T.unauthorized, null);
    else if (s === 413 || s === 422) this.fail(T.invalid, null);
    else this.fail(T.serverError, null);
  };

  Turn.prototype.streamError = function (ev) {
    if (ev.code === 'llm_unavailable') {
      var wait = ev.retry_after ? Math.max(1, Math.ceil(ev.retry_after)) : null;
      this.fail(T.overloaded(wait ? T.waitSeconds(wait) : T.later), wait);
    } else {
      this.fail(T.serverError, null);
    }
  };

  // The stream ended (or was stopped) before the final answer: keep what arrived.
  Turn.prototype.broken = function (why) {
    this.setStatus('');
    this.node.className = 'vb-msg vb-msg-answer vb-error vb-broken';
    if (this.raw) this.markPartial();
    else clear(this.text);
    this.errorBox(why === 'stopped' ? T.stopped : T.broken, null);
  };

  // ------------------------------------------------------------------ boot

  function boot(cfg) {
    try {
      var w = new Widget(cfg || {});
      ns.instances.push(w);
      return w;
    } catch (e) {
      if (window.console) console.error('Vraagbaak widget:', e);
      return null;
    }
  }

  var pending = Array.isArray(ns.q) ? ns.q : [];
  ns.q = { push: boot };
  pending.forEach(boot);
})();
