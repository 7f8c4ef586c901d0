// Static Web App for the practices' frontend (built and uploaded from its own repository
// with the deployment token). Static Web Apps are not offered in Germany West Central; the
// static files are served from Azure's global edge and hold no health data.

param name string
param suffix string
param location string
param tags object

resource site 'Microsoft.Web/staticSites@2023-12-01' = {
  name: '${name}-web-${suffix}'
  location: location
  tags: tags
  sku: { name: 'Free', tier: 'Free' }
  properties: {
    allowConfigFileUpdates: true
    stagingEnvironmentPolicy: 'Enabled'
  }
}

output name string = site.name
output defaultHostname string = site.properties.defaultHostname
