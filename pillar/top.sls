base:
  'roles:hecate-*':
    - match: grain
    - hecate
  '*':
    - hecate
