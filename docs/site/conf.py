# Sphinx configuration of the kvm.images docs site (built by tools/docs-site.sh).
# No intersphinx: the site builds offline; the few labels of Ansible's own docs
# that generated pages refer to are defined in ansible-references.rst.

project = 'kvm.images'
copyright = 'kvm.images contributors'
title = 'kvm.images collection documentation'
html_short_title = 'kvm.images'

extensions = ['sphinx_antsibull_ext', 'myst_parser']
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
myst_heading_anchors = 3

pygments_style = 'ansible'
highlight_language = 'YAML+Jinja'

html_theme = 'sphinx_ansible_theme'
html_show_sphinx = False
display_version = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

default_role = 'any'
nitpicky = True
