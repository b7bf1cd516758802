"""Safe rendering: every character of the data is escaped before any Markdown formatting."""

from __future__ import annotations

from rewardkit.label.render import lang_attribute, language_of, render_conversation, render_markdown


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


def test_the_language_of_chinese_japanese_and_korean_text():
    assert language_of("如何在 Python 中反转一个列表？") == "zh"
    assert language_of("これは日本語の文です。漢字も使います。") == "ja"  # kana, with Han
    assert language_of("안녕하세요, 세계") == "ko"
    assert language_of("Reverse a list with slicing.") is None and language_of("") is None
    assert language_of("The character 中 means middle, as any dictionary will tell you.") is None  # a word or two
    # code is not prose: Chinese around a long code block is still Chinese
    assert language_of("用切片：\n```python\nbackwards = numbers[::-1]  # reversed_copy_of_numbers\n```\n原列表不变。") == "zh"
    assert lang_attribute("中文") == ' lang="zh"' and lang_attribute("English") == ""
    html = render_conversation([{"role": "user", "content": "你好"}, {"role": "assistant", "content": "Hi <b>"}])
    assert '<div class="md" lang="zh"><p>你好</p>' in html and '<div class="md"><p>Hi &lt;b&gt;</p>' in html
