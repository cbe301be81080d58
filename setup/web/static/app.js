// fleet2mqtt setup page script: small conveniences over pages that work
// without it. Every URL is relative, so the page works under a path prefix.
(() => {
  'use strict';
  const csrf = document.body.dataset.csrf || '';
  const pollMS = parseInt(document.body.dataset.pollMs, 10) || 3000;
  const maxPolls = Math.ceil(30 * 60 * 1000 / pollMS); // stop after 30 minutes

  // Step 1: the values to enter at Tesla follow the hostname as typed.
  const host = document.getElementById('host');
  const origin = document.getElementById('origin');
  const redirectOut = document.getElementById('redirect-uri');
  // The name alone, as the server keeps it: no scheme, path, port or
  // trailing dot (the server refuses what it cannot use, with a reason).
  const bareHost = (v) => v.trim().toLowerCase().replace(/^[a-z]+:\/\//, '').replace(/[/?#].*$/, '').replace(/:\d*$/, '').replace(/\.$/, '');
  if (host && !host.disabled) {
    const refreshApp = () => {
      const o = 'https://' + (bareHost(host.value) || '<your hostname>');
      if (origin) origin.textContent = o;
      if (redirectOut && redirectOut.hasAttribute('data-follow-host')) redirectOut.textContent = o + '/oauth/callback';
    };
    refreshApp();
    host.addEventListener('input', refreshApp);
  }

  // Pages that wait for something poll a status address.
  const toggleDone = (done) => {
    document.querySelectorAll('.when-done').forEach((el) => { el.hidden = !done; });
    document.querySelectorAll('.when-waiting').forEach((el) => { el.hidden = done; });
  };
  const poller = document.querySelector('[data-poll]');
  if (poller) {
    const url = poller.getAttribute('data-poll');
    const problem = poller.querySelector('.poll-problem');
    let polls = 0;
    const tick = () => {
      if (++polls > maxPolls) return;
      fetch(url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
        .then((r) => { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
        .then((a) => {
          (a.items || []).forEach((it) => {
            const el = document.getElementById(it.id);
            if (el) { el.textContent = it.text; el.setAttribute('data-state', it.state); }
          });
          if (problem) { problem.textContent = a.problem || ''; problem.hidden = !a.problem; }
          toggleDone(a.done);
          if (a.done && a.next) { location.href = new URL(a.next, location.href).href; return; }
          if (!a.done || a.more) setTimeout(tick, pollMS);
        })
        .catch((e) => {
          if (problem) { problem.textContent = 'No answer from fleet2mqtt (' + e.message + '); trying again.'; problem.hidden = false; }
          setTimeout(tick, pollMS * 2);
        });
    };
    setTimeout(tick, pollMS);
  }

  // Step 7: presets in place, live counts and the monthly estimate.
  const form = document.getElementById('fields-form');
  if (form) {
    const est = document.getElementById('estimate');
    let timer;
    const counts = () => {
      form.querySelectorAll('details').forEach((d) => {
        const c = d.querySelector('.count');
        if (c) c.textContent = d.querySelectorAll('input[name=field]:checked').length + ' of ' + d.querySelectorAll('input[name=field]').length;
      });
    };
    const update = () => {
      counts();
      clearTimeout(timer);
      timer = setTimeout(() => {
        fetch('estimate', {
          method: 'POST', credentials: 'same-origin',
          headers: { 'X-CSRF-Token': csrf, 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
          body: new URLSearchParams(new FormData(form)),
        }).then((r) => r.json()).then((e) => {
          est.textContent = e.text;
          est.classList.toggle('over', !!e.over);
        }).catch(() => { /* the estimate is a convenience */ });
      }, 250);
    };
    // The preset whose signals are exactly the ticked ones is marked.
    const presetButtons = Array.from(document.querySelectorAll('[data-preset]'));
    const markPreset = () => {
      const ticked = new Set(Array.from(form.querySelectorAll('input[name=field]:checked')).map((cb) => cb.value));
      presetButtons.forEach((btn) => {
        const names = JSON.parse(btn.getAttribute('data-names'));
        const same = names.length === ticked.size && names.every((n) => ticked.has(n));
        btn.classList.toggle('active', same);
        btn.setAttribute('aria-pressed', same ? 'true' : 'false');
      });
    };
    form.addEventListener('input', (ev) => { if (ev.target.id !== 'signal-search') { markPreset(); update(); } });
    form.addEventListener('change', (ev) => { if (ev.target.id !== 'signal-search') { markPreset(); update(); } });

    // The search box filters signals by name, protocol name and
    // description; every word typed must match.
    const search = document.getElementById('signal-search');
    const noMatch = document.getElementById('no-match');
    if (search) {
      search.addEventListener('input', () => {
        const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
        let shown = 0;
        form.querySelectorAll('#signal-groups details').forEach((d) => {
          let inGroup = 0;
          d.querySelectorAll('li[data-search]').forEach((li) => {
            const text = li.getAttribute('data-search').toLowerCase();
            const match = words.every((w) => text.includes(w));
            li.hidden = !match;
            if (match) inGroup++;
          });
          d.hidden = inGroup === 0;
          d.open = words.length ? inGroup > 0 : !!d.querySelector('input[name=field]:checked');
          shown += inGroup;
        });
        if (noMatch) noMatch.hidden = shown > 0;
      });
      // Enter in the search box must not save the form.
      search.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') ev.preventDefault(); });
    }
    document.querySelectorAll('[data-preset]').forEach((btn) => {
      btn.addEventListener('click', (ev) => {
        ev.preventDefault();
        const names = JSON.parse(btn.getAttribute('data-names'));
        const deltas = JSON.parse(btn.getAttribute('data-deltas'));
        form.querySelectorAll('input[name=field]').forEach((cb) => {
          cb.checked = names.includes(cb.value);
          const d = form.querySelector('input[name="delta.' + cb.value + '"]');
          if (d && cb.checked) d.value = deltas[cb.value] !== undefined ? deltas[cb.value] : '';
        });
        form.querySelectorAll('details').forEach((d) => { d.open = !!d.querySelector('input[name=field]:checked'); });
        markPreset();
        update();
      });
    });
  }

  // Forms that undo something ask first.
  document.querySelectorAll('form[data-confirm]').forEach((f) => {
    f.addEventListener('submit', (ev) => {
      if (!window.confirm(f.getAttribute('data-confirm'))) ev.preventDefault();
    });
  });
})();
