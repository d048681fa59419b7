"""Check a built docs site against what ansible-doc reports for the collection.

Every module, filter and role has a page, and each page names every option
(and, for modules, every top-level return value) that ansible-doc knows, so a
page cannot silently lose a part of the documentation.

Usage: docs_site_check.py SITE_DIR COLLECTION_DIR
"""

from __future__ import annotations

import html.parser
import json
import os
import subprocess
import sys

NAMESPACE, NAME = 'kvm', 'images'


class _TextCollector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.chunks = []

    def handle_data(self, data):
        self.chunks.append(data)


def page_text(path):
    collector = _TextCollector()
    with open(path, encoding='utf-8') as page:
        collector.feed(page.read())
    return ' '.join(collector.chunks)


def ansible_doc(plugin_type, names):
    output = subprocess.run(
        ['ansible-doc', '--json', '-t', plugin_type] + [f'{NAMESPACE}.{NAME}.{name}' for name in names],
        check=True, capture_output=True, text=True).stdout
    return json.loads(output)


def plugin_names(collection, subdir, suffixes):
    names = set()
    for entry in os.listdir(os.path.join(collection, 'plugins', subdir)):
        stem, ext = os.path.splitext(entry)
        if ext in suffixes and not stem.startswith('_'):
            names.add(stem)
    return sorted(names)


def filter_names(collection):
    names = set()
    for entry in os.listdir(os.path.join(collection, 'plugins', 'filter')):
        stem, ext = os.path.splitext(entry)
        if ext == '.yml':
            names.add(stem)
    return sorted(names)


# antsibull-docs shows a filter's _input and _value under these headings.
SECTION_OF_HIDDEN_NAME = {'_input': 'Input', '_value': 'Return Value'}


def missing_words(text, words):
    return sorted(word for word in words if SECTION_OF_HIDDEN_NAME.get(word, word) not in text)


def check_page(site, page_name, expected, problems):
    path = os.path.join(site, 'collections', NAMESPACE, NAME, page_name + '.html')
    if not os.path.isfile(path):
        problems.append(f'{page_name}: no page')
        return 0
    lost = missing_words(page_text(path), expected)
    if lost:
        problems.append(f"{page_name}: missing {', '.join(lost)}")
    return len(expected)


def main(argv):
    site, collection = argv[1], argv[2]
    problems = []
    counts = {}

    modules = plugin_names(collection, 'modules', {'.py'})
    for fqcn, doc in ansible_doc('module', modules).items():
        name = fqcn.rsplit('.', 1)[1]
        expected = set(doc['doc'].get('options') or {}) | set(doc.get('return') or {})
        counts[name + '_module'] = check_page(site, name + '_module', expected, problems)

    filters = filter_names(collection)
    for fqcn, doc in ansible_doc('filter', filters).items():
        name = fqcn.rsplit('.', 1)[1]
        expected = set(doc['doc'].get('options') or {}) | set(doc.get('return') or {})
        counts[name + '_filter'] = check_page(site, name + '_filter', expected, problems)

    roles = sorted(os.listdir(os.path.join(collection, 'roles')))
    for fqcn, doc in ansible_doc('role', roles).items():
        name = fqcn.rsplit('.', 1)[1]
        expected = set()
        for entry_point in doc['entry_points'].values():
            expected |= set(entry_point.get('options') or {})
        counts[name + '_role'] = check_page(site, name + '_role', expected, problems)

    for guide in sorted(os.listdir(os.path.join(collection, 'docs'))):
        if guide.endswith('.md') and not os.path.isfile(os.path.join(site, 'guide', guide[:-3] + '.html')):
            problems.append(f'guide {guide}: no page')

    if len(counts) != len(modules) + len(filters) + len(roles):
        problems.append(f'ansible-doc returned {len(counts)} plugins and roles,'
                        f' expected {len(modules) + len(filters) + len(roles)}')
    for problem in problems:
        print('docs site: ' + problem, file=sys.stderr)
    if problems:
        return 1
    print(f'==> docs site: {len(counts)} pages checked ({len(modules)} modules, {len(filters)} filters,'
          f' {len(roles)} roles), {sum(counts.values())} options and return values found, in {site}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
