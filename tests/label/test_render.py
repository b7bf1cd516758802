"""Safe rendering: every character of the data is escaped before any Markdown formatting."""

from __future__ import annotations

from rewardkit.label.render import render_conversation, render_markdown


def test_markdown_formats_escaped_text():
    assert render_markdown("Use **bold** and *em* and `x < y`") == (
        "<p>Use <strong>bold</strong> and <em>em</em> and <code>x &lt; y</code></p>")
    assert render_markdown("```python\nif a < b:\n    print('<b>')\n```\nafter") == (
        '<pre><code class="language-python">if a &lt; b:\n    print(&#x27;&lt;b&gt;&#x27;)</code></pre>'
        "<p>after</p>")
    assert render_markdown("# Title\n- one\n- two\n\n1. first") == (
        "<h3>Title</h3><ul><li>one</li><li>two</li></ul><ol><li>first</li></ol>")
    assert render_markdown("line one\nline two") == "<p>line one<br>line two</p>"


def test_attacks_stay_text():
    payload = '<script>alert(1)</script><img src=x onerror="alert(2)">[click](javascript:alert(3))'
    html = render_markdown(payload)
    assert "<script" not in html and "<img" not in html and "<a" not in html
    assert html == ("<p>&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&quot;alert(2)&quot;&gt;"
                    "[click](javascript:alert(3))</p>")
    # a fence language cannot smuggle an attribute
    assert render_markdown('```x" onmouseover="alert(1)\ncode\n```') == (
        '<pre><code class="language-xonmouseoveralert1">code</code></pre>')
    # bold markers around markup do not unescape it
    assert render_markdown("**<b>x</b>**") == "<p><strong>&lt;b&gt;x&lt;/b&gt;</strong></p>"


def test_conversations_render_turn_by_turn():
    html = render_conversation("\n\nHuman: Hi <there>\n\nAssistant: Hello\n\nHuman: More?\n\nAssistant:")
    assert html.count('class="msg msg-user"') == 2 and html.count('class="msg msg-assistant"') == 1
    assert "Hi &lt;there&gt;" in html
    messages = [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Q"}]
    assert render_conversation(messages).startswith('<div class="msg msg-system"><div class="role">System</div>')
    assert render_conversation("plain question").count('msg-user') == 1
